//! Statements through the connection's statement cache.

/// Queries through the connection's statement cache: each distinct SQL text is parsed
/// and planned once per connection, not on every call, and costs one round trip instead
/// of two. Use it for SQL whose text is fixed (or one of a few variants).
pub trait Cached {
    fn query_cached<'a>(
        &'a self,
        sql: &'a str,
        params: &'a [&'a (dyn tokio_postgres::types::ToSql + Sync)],
    ) -> impl std::future::Future<Output = Result<Vec<tokio_postgres::Row>, tokio_postgres::Error>>
           + Send
           + 'a;

    fn query_one_cached<'a>(
        &'a self,
        sql: &'a str,
        params: &'a [&'a (dyn tokio_postgres::types::ToSql + Sync)],
    ) -> impl std::future::Future<Output = Result<tokio_postgres::Row, tokio_postgres::Error>> + Send + 'a;

    fn query_opt_cached<'a>(
        &'a self,
        sql: &'a str,
        params: &'a [&'a (dyn tokio_postgres::types::ToSql + Sync)],
    ) -> impl std::future::Future<Output = Result<Option<tokio_postgres::Row>, tokio_postgres::Error>>
           + Send
           + 'a;

    fn execute_cached<'a>(
        &'a self,
        sql: &'a str,
        params: &'a [&'a (dyn tokio_postgres::types::ToSql + Sync)],
    ) -> impl std::future::Future<Output = Result<u64, tokio_postgres::Error>> + Send + 'a;
}

#[allow(clippy::manual_async_fn)] // `async fn` would not promise `Send`
impl<C: deadpool_postgres::GenericClient + Sync> Cached for C {
    fn query_cached<'a>(
        &'a self,
        sql: &'a str,
        params: &'a [&'a (dyn tokio_postgres::types::ToSql + Sync)],
    ) -> impl std::future::Future<Output = Result<Vec<tokio_postgres::Row>, tokio_postgres::Error>>
           + Send
           + 'a {
        async move {
            let statement = self.prepare_cached(sql).await?;
            self.query(&statement, params).await
        }
    }

    fn query_one_cached<'a>(
        &'a self,
        sql: &'a str,
        params: &'a [&'a (dyn tokio_postgres::types::ToSql + Sync)],
    ) -> impl std::future::Future<Output = Result<tokio_postgres::Row, tokio_postgres::Error>> + Send + 'a
    {
        async move {
            let statement = self.prepare_cached(sql).await?;
            self.query_one(&statement, params).await
        }
    }

    fn query_opt_cached<'a>(
        &'a self,
        sql: &'a str,
        params: &'a [&'a (dyn tokio_postgres::types::ToSql + Sync)],
    ) -> impl std::future::Future<Output = Result<Option<tokio_postgres::Row>, tokio_postgres::Error>>
           + Send
           + 'a {
        async move {
            let statement = self.prepare_cached(sql).await?;
            self.query_opt(&statement, params).await
        }
    }

    fn execute_cached<'a>(
        &'a self,
        sql: &'a str,
        params: &'a [&'a (dyn tokio_postgres::types::ToSql + Sync)],
    ) -> impl std::future::Future<Output = Result<u64, tokio_postgres::Error>> + Send + 'a {
        async move {
            let statement = self.prepare_cached(sql).await?;
            self.execute(&statement, params).await
        }
    }
}
