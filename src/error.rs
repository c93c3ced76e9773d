//! What a use case answers when it does not do what it was asked, in the domain's words:
//! a field that fails validation, a thing that is not there, a limit, a store that is away.
//! `http::error` gives each its status code; nothing here knows about HTTP.

use serde::Serialize;

/// One field of a request that fails validation, and why (`"must be a string"`). The one
/// shape of validation error: links, partners, reports, stats parameters, config, installs
/// and conversions all answer with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

impl FieldError {
    pub fn new(field: &str, message: impl Into<String>) -> FieldError {
        FieldError {
            field: field.to_string(),
            message: message.into(),
        }
    }

    /// This error, located at item `index` of a batch (an empty field: the item as a whole).
    pub fn at(self, index: usize) -> ItemError {
        ItemError {
            index,
            field: (!self.field.is_empty()).then_some(self.field),
            message: self.message,
        }
    }
}

/// A `FieldError` of one item of a batch (`POST /v1/events`, a webhook call, bulk links).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ItemError {
    pub index: usize,
    /// `None` when the item as a whole is wrong (not an object).
    pub field: Option<String>,
    pub message: String,
}

impl ItemError {
    pub fn new(index: usize, field: &str, message: impl Into<String>) -> ItemError {
        FieldError::new(field, message).at(index)
    }

    /// The item as a whole is wrong.
    pub fn whole(index: usize, message: impl Into<String>) -> ItemError {
        ItemError {
            index,
            field: None,
            message: message.into(),
        }
    }
}

/// Which store could not be reached, and what it said (for the log, never the client).
#[derive(Debug)]
pub enum Unavailable {
    Redis(String),
    ClickHouse(String),
}

/// Why a use case refused or failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{}: {}", .0.field, .0.message)]
    Invalid(FieldError),
    #[error("{0}")]
    NotFound(String),
    /// The request conflicts with what is stored (`code` says how), naming the field when
    /// one field is the cause.
    #[error("{message}")]
    Conflict {
        code: &'static str,
        message: String,
        field: Option<&'static str>,
    },
    /// The tenant already has `limit` of `resource`.
    #[error("the tenant already has the most {resource} it may have ({limit})")]
    LimitReached {
        resource: &'static str,
        limit: usize,
    },
    /// Sluice is backed up; the caller should retry shortly.
    #[error("busy: {0}")]
    Busy(&'static str),
    /// Rows were handed to the pipeline but not confirmed durable in time; a retry is safe
    /// (its ids prevent duplicates).
    #[error("not confirmed durable in time")]
    NotConfirmed,
    #[error("unavailable: {0:?}")]
    Unavailable(Unavailable),
}

impl From<FieldError> for Error {
    fn from(e: FieldError) -> Error {
        Error::Invalid(e)
    }
}

impl From<Unavailable> for Error {
    fn from(e: Unavailable) -> Error {
        Error::Unavailable(e)
    }
}
