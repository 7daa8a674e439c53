//! OTP verifications: create, resend, check, cancel, read, and account lockout. Each is
//! one short transaction; times come from the database clock so that instances agree.
//!
//! Every send (a create or a resend) is admitted by the rules in `admission` (pure, one
//! place for each rule) from a snapshot read by `snapshot`; creates go through the one
//! set-based path in `create` (batched across requests by `batcher`, or called
//! directly when batching is off).

pub mod admission;
pub mod batcher;
mod cancel;
mod check;
pub mod create;
mod deps;
mod error;
mod lockout;
mod model;
mod read;
mod refusal;
mod resend;
mod sms;
pub mod snapshot;

use std::sync::Arc;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

pub use batcher::CreateQueue;
pub use deps::Deps;
pub use error::OtpError;
pub use model::{AttemptView, CheckView, DeliveryView, NewOtp, OtpEvent, OtpView};

use crate::clients::ApiClient;

/// The OTP service: its dependencies, and the create queue when batching is on.
pub struct OtpService {
    pub deps: Arc<Deps>,
    /// Where creates are handed to, when batching is on (`otp.create_batchers`).
    create_queue: Option<Arc<CreateQueue>>,
}

impl OtpService {
    /// The service; with `otp.create_batchers > 0`, creates are queued for batchers
    /// that `start_batchers` starts.
    pub fn new(deps: Deps) -> OtpService {
        let otp = &deps.settings.otp;
        let create_queue = (otp.create_batchers > 0)
            .then(|| Arc::new(CreateQueue::new(otp.create_batch_max * 16)));
        OtpService {
            deps: Arc::new(deps),
            create_queue,
        }
    }

    /// The create batchers (`otp.create_batchers` of them), until `shutdown`.
    pub fn start_batchers(&self, shutdown: &CancellationToken) -> Vec<JoinHandle<()>> {
        let Some(queue) = &self.create_queue else {
            return Vec::new();
        };
        let otp = &self.deps.settings.otp;
        (0..otp.create_batchers)
            .map(|_| {
                tokio::spawn(batcher::run(
                    self.deps.clone(),
                    queue.clone(),
                    otp.create_batch_max.max(1),
                    shutdown.clone(),
                ))
            })
            .collect()
    }

    /// Creates a verification: through this instance's create batcher (requests
    /// arriving together share one transaction), or as a batch of one when batching is
    /// off. The code is made and sealed here, in the request's task, before it is
    /// queued; it never leaves except as its MAC and sealed SMS texts.
    #[tracing::instrument(name = "otp.create", skip_all, fields(client = %client.id, purpose = req.purpose.as_str()))]
    pub async fn create(&self, client: &ApiClient, req: NewOtp) -> create::Reply {
        client.allow_purpose(req.purpose.as_str())?;
        let prepared = model::prepare(&self.deps.keys, &self.deps.settings, client, &req)?;
        let job = create::Job {
            client: client.clone(),
            req,
            prepared,
        };
        match &self.create_queue {
            Some(queue) => queue.submit(job).await,
            None => create::run(&self.deps, vec![job]).await.remove(0),
        }
    }

    /// Creates several verifications together, in this order, as one batch (the path
    /// the batchers take): for a caller that holds several creates at once.
    pub async fn create_together(&self, reqs: Vec<(ApiClient, NewOtp)>) -> Vec<create::Reply> {
        let mut jobs = Vec::with_capacity(reqs.len());
        let mut replies: Vec<Option<create::Reply>> = Vec::with_capacity(reqs.len());
        let mut at = Vec::with_capacity(reqs.len());
        for (client, req) in reqs {
            let prepared = client
                .allow_purpose(req.purpose.as_str())
                .map_err(OtpError::from)
                .and_then(|()| model::prepare(&self.deps.keys, &self.deps.settings, &client, &req));
            match prepared {
                Ok(prepared) => {
                    at.push(replies.len());
                    replies.push(None);
                    jobs.push(create::Job {
                        client,
                        req,
                        prepared,
                    });
                }
                Err(e) => replies.push(Some(Err(e))),
            }
        }
        for (i, reply) in at.into_iter().zip(create::run(&self.deps, jobs).await) {
            replies[i] = Some(reply);
        }
        replies.into_iter().flatten().collect()
    }

    /// Sends a new code that replaces the old one: by `channel` alone when one is
    /// named, else by the verification's channels.
    pub async fn resend(
        &self,
        client: &ApiClient,
        id: Uuid,
        channel: Option<crate::domain::Channel>,
    ) -> Result<OtpView, OtpError> {
        resend::resend(&self.deps, client, id, channel).await
    }

    /// Checks a code.
    pub async fn check(&self, client: Uuid, id: Uuid, code: &str) -> Result<CheckView, OtpError> {
        check::check(&self.deps, client, id, code).await
    }

    /// Cancels a verification.
    pub async fn cancel(&self, client: Uuid, id: Uuid) -> Result<OtpView, OtpError> {
        cancel::cancel(&self.deps, client, id).await
    }

    /// Reads a verification, with its latest SMS's delivery.
    pub async fn get(&self, client: Uuid, id: Uuid) -> Result<OtpView, OtpError> {
        read::get(&self.deps, client, id).await
    }

    /// Unlocks an account (operators). Returns whether it was locked.
    pub async fn unlock_account(&self, client: Uuid, account: &str) -> Result<bool, OtpError> {
        lockout::unlock_account(&self.deps, client, account).await
    }

    /// Sends refused by the pumping guards (this instance).
    pub fn guard_counters(&self) -> &crate::guards::GuardCounters {
        &self.deps.guard_counters
    }

    /// The conversion guard's counts, for the flusher.
    pub fn conversion_counts(&self) -> Arc<crate::guards::ConversionCounts> {
        self.deps.conversion_counts.clone()
    }
}
