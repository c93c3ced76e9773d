//! The one place errors become HTTP responses: `{"error": {"code", "message", "details"?}}`.

use crate::error::{Error, FieldError, Unavailable};
use crate::store::clickhouse::ChError;
use crate::store::redis::RedisError;
use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{HeaderValue, CACHE_CONTROL, CONTENT_TYPE, RETRY_AFTER};
use hyper::{Response, StatusCode};
use serde_json::{json, Value};

pub type Body = Full<Bytes>;

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    pub details: Option<Value>,
    /// Seconds, sent as `Retry-After` (429).
    pub retry_after: Option<u64>,
    /// The store that failed, for the log line and metric written where the error is
    /// answered (`http::answer`), never for the client.
    pub unavailable: Option<Box<Unavailable>>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            code,
            message: message.into(),
            details: None,
            retry_after: None,
            unavailable: None,
        }
    }

    pub fn with_details(mut self, details: Value) -> ApiError {
        self.details = Some(details);
        self
    }

    pub fn bad_request(code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, code, message)
    }

    /// A field failed validation; `details.field` names it.
    pub fn invalid_field(field: &str, message: impl std::fmt::Display) -> ApiError {
        ApiError::bad_request("invalid_field", format!("{field} {message}"))
            .with_details(json!({ "field": field }))
    }

    pub fn not_found(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    pub fn method_not_allowed() -> ApiError {
        ApiError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            "method not allowed on this path",
        )
    }

    /// The tenant already has as many `resource` as it may (`limits` in the config).
    pub fn limit_reached(resource: &str, limit: usize) -> ApiError {
        ApiError::new(
            StatusCode::CONFLICT,
            "limit_reached",
            format!("this tenant already has {limit} {resource}, the most it may have; delete some first or ask the operator to raise the limit"),
        )
        .with_details(json!({ "resource": resource, "limit": limit }))
    }

    /// A bug, not the request's fault (a handler panicked).
    pub fn internal() -> ApiError {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal_error",
            "the request could not be handled; it has been logged",
        )
    }

    pub fn into_response(self) -> Response<Body> {
        let mut error = json!({ "code": self.code, "message": self.message });
        if let Some(details) = self.details {
            error["details"] = details;
        }
        let mut resp = json_response(self.status, &json!({ "error": error }));
        if let Some(seconds) = self.retry_after {
            resp.headers_mut()
                .insert(RETRY_AFTER, HeaderValue::from(seconds));
        }
        resp
    }
}

impl From<Error> for ApiError {
    fn from(e: Error) -> ApiError {
        match e {
            Error::Invalid(e) => e.into(),
            Error::NotFound(message) => ApiError::not_found(message),
            Error::Conflict {
                code,
                message,
                field,
            } => {
                let e = ApiError::new(StatusCode::CONFLICT, code, message);
                match field {
                    Some(field) => e.with_details(json!({ "field": field })),
                    None => e,
                }
            }
            Error::LimitReached { resource, limit } => ApiError::limit_reached(resource, limit),
            Error::Busy(message) => ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "busy", message),
            Error::NotConfirmed => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "not_confirmed",
                "the data could not be confirmed stored in time; retry (idempotency keys prevent duplicates)",
            ),
            Error::Unavailable(cause) => {
                let message = match cause {
                    Unavailable::Redis(_) => "configuration store unavailable; retry later",
                    Unavailable::ClickHouse(_) => "analytics store unavailable; retry later",
                };
                let mut e = ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "storage_unavailable",
                    message,
                );
                e.unavailable = Some(Box::new(cause));
                e
            }
        }
    }
}

impl From<FieldError> for ApiError {
    fn from(e: FieldError) -> ApiError {
        ApiError::invalid_field(&e.field, e.message)
    }
}

impl From<RedisError> for ApiError {
    fn from(e: RedisError) -> ApiError {
        Error::from(e).into()
    }
}

impl From<ChError> for ApiError {
    fn from(e: ChError) -> ApiError {
        Error::from(e).into()
    }
}

pub fn json_response(status: StatusCode, value: &Value) -> Response<Body> {
    let body = serde_json::to_vec(value).expect("json values serialize");
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    *resp.status_mut() = status;
    resp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    resp.headers_mut()
        .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

pub fn empty_response(status: StatusCode) -> Response<Body> {
    let mut resp = Response::new(Full::new(Bytes::new()));
    *resp.status_mut() = status;
    resp
}
