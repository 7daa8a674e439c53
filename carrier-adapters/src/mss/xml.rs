//! A small, hostile-input-safe XML tree for SOAP messages.
//!
//! Refused outright: a DOCTYPE (so no DTD, no entity declarations, no billion laughs, no
//! external entities), processing instructions other than the XML declaration, entity
//! references other than the five predefined ones and character references, more than
//! `max_bytes`, nesting deeper than `MAX_DEPTH`, more than `MAX_ELEMENTS` elements.

use std::borrow::Cow;

use quick_xml::events::Event;
use quick_xml::name::ResolveResult;
use quick_xml::NsReader;

pub const MAX_DEPTH: usize = 32;
pub const MAX_ELEMENTS: usize = 4096;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum XmlError {
    #[error("message is {size} bytes, more than the {max} allowed")]
    TooLarge { size: usize, max: usize },
    #[error("DOCTYPE declarations are not accepted")]
    Doctype,
    #[error("processing instructions are not accepted")]
    ProcessingInstruction,
    #[error("entity reference &{0}; is not accepted")]
    Entity(String),
    #[error("elements nest deeper than {MAX_DEPTH}")]
    TooDeep,
    #[error("more than {MAX_ELEMENTS} elements")]
    TooManyElements,
    #[error("prefix {0:?} is not bound to a namespace")]
    UnboundPrefix(String),
    #[error("not well-formed XML: {0}")]
    Malformed(String),
    #[error("the document has no root element")]
    Empty,
}

/// An element: its namespace (if any), local name, attributes by local name, children
/// and the concatenated text directly inside it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Element {
    pub namespace: Option<String>,
    pub name: String,
    pub attributes: Vec<(String, String)>,
    pub children: Vec<Element>,
    pub text: String,
}

impl Element {
    pub fn attr(&self, name: &str) -> Option<&str> {
        self.attributes
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The first child with this local name, in any namespace.
    pub fn child(&self, name: &str) -> Option<&Element> {
        self.children.iter().find(|c| c.name == name)
    }

    pub fn children_named<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Element> + 'a {
        self.children.iter().filter(move |c| c.name == name)
    }

    pub fn is(&self, namespace: &str, name: &str) -> bool {
        self.name == name && self.namespace.as_deref() == Some(namespace)
    }

    pub fn trimmed_text(&self) -> &str {
        self.text.trim()
    }
}

fn malformed(e: impl std::fmt::Display) -> XmlError {
    XmlError::Malformed(e.to_string())
}

fn resolve(ns: ResolveResult<'_>) -> Result<Option<String>, XmlError> {
    match ns {
        ResolveResult::Bound(ns) => Ok(Some(String::from_utf8_lossy(ns.as_ref()).into_owned())),
        ResolveResult::Unbound => Ok(None),
        ResolveResult::Unknown(prefix) => Err(XmlError::UnboundPrefix(
            String::from_utf8_lossy(&prefix).into_owned(),
        )),
    }
}

fn predefined(name: &str) -> Option<&'static str> {
    Some(match name {
        "lt" => "<",
        "gt" => ">",
        "amp" => "&",
        "apos" => "'",
        "quot" => "\"",
        _ => return None,
    })
}

/// Parses a whole document into its root element.
pub fn parse(input: &[u8], max_bytes: usize) -> Result<Element, XmlError> {
    if input.len() > max_bytes {
        return Err(XmlError::TooLarge {
            size: input.len(),
            max: max_bytes,
        });
    }
    let text = std::str::from_utf8(input).map_err(|e| malformed(format!("not UTF-8: {e}")))?;
    let mut reader = NsReader::from_str(text);
    reader.config_mut().check_end_names = true;
    reader.config_mut().expand_empty_elements = true;
    let mut stack: Vec<Element> = Vec::new();
    let mut root: Option<Element> = None;
    let mut count = 0usize;
    loop {
        let (ns, event) = reader.read_resolved_event().map_err(malformed)?;
        match event {
            Event::DocType(_) => return Err(XmlError::Doctype),
            Event::PI(_) => return Err(XmlError::ProcessingInstruction),
            Event::Decl(_) | Event::Comment(_) => {}
            // Empty elements arrive as Start + End (expand_empty_elements).
            Event::Start(start) => {
                count += 1;
                if count > MAX_ELEMENTS {
                    return Err(XmlError::TooManyElements);
                }
                if stack.len() >= MAX_DEPTH {
                    return Err(XmlError::TooDeep);
                }
                if root.is_some() {
                    return Err(malformed("content after the root element"));
                }
                let namespace = resolve(ns)?;
                let name = String::from_utf8_lossy(start.local_name().as_ref()).into_owned();
                let mut attributes = Vec::new();
                for attr in start.attributes() {
                    let attr = attr.map_err(malformed)?;
                    let key = attr.key;
                    if key.as_ref() == b"xmlns" || key.as_ref().starts_with(b"xmlns:") {
                        continue;
                    }
                    let value = attr
                        .normalized_value(quick_xml::XmlVersion::Implicit1_0)
                        .map_err(|e| match e {
                            quick_xml::Error::Escape(
                                quick_xml::escape::EscapeError::UnrecognizedEntity(_, name),
                            ) => XmlError::Entity(name),
                            other => malformed(other),
                        })?;
                    attributes.push((
                        String::from_utf8_lossy(key.local_name().as_ref()).into_owned(),
                        value.into_owned(),
                    ));
                }
                stack.push(Element {
                    namespace,
                    name,
                    attributes,
                    children: Vec::new(),
                    text: String::new(),
                });
            }
            Event::End(_) => {
                let done = stack.pop().ok_or_else(|| malformed("unbalanced end tag"))?;
                match stack.last_mut() {
                    Some(parent) => parent.children.push(done),
                    None => root = Some(done),
                }
            }
            Event::Text(t) => {
                let content = t
                    .xml_content(quick_xml::XmlVersion::Implicit1_0)
                    .map_err(malformed)?;
                push_text(&mut stack, &root, &content)?;
            }
            Event::CData(c) => {
                let content = c.decode().map_err(malformed)?;
                push_text(&mut stack, &root, &content)?;
            }
            Event::GeneralRef(r) => {
                if r.is_char_ref() {
                    let ch = r
                        .resolve_char_ref()
                        .map_err(malformed)?
                        .ok_or_else(|| malformed("bad character reference"))?;
                    push_text(&mut stack, &root, &ch.to_string())?;
                } else {
                    let name = r.decode().map_err(malformed)?;
                    let replacement =
                        predefined(&name).ok_or_else(|| XmlError::Entity(name.to_string()))?;
                    push_text(&mut stack, &root, replacement)?;
                }
            }
            Event::Empty(_) => return Err(malformed("unexpected empty element event")),
            Event::Eof => break,
        }
    }
    if !stack.is_empty() {
        return Err(malformed("document ends inside an element"));
    }
    root.ok_or(XmlError::Empty)
}

fn push_text(stack: &mut [Element], root: &Option<Element>, content: &str) -> Result<(), XmlError> {
    match stack.last_mut() {
        Some(el) => {
            el.text.push_str(content);
            Ok(())
        }
        None if content.trim().is_empty() => Ok(()),
        None if root.is_some() => Err(malformed("text after the root element")),
        None => Err(malformed("text before the root element")),
    }
}

/// Escapes text and attribute values for writing. Carriage returns, newlines and tabs
/// become character references so that a reader's end-of-line and attribute-value
/// normalisation gives back exactly what was written.
pub fn escape(value: &str) -> Cow<'_, str> {
    let escaped = quick_xml::escape::escape(value);
    if escaped.contains(['\r', '\n', '\t']) {
        Cow::Owned(
            escaped
                .replace('\r', "&#13;")
                .replace('\n', "&#10;")
                .replace('\t', "&#9;"),
        )
    } else {
        escaped
    }
}
