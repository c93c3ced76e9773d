//! Apps: what a tenant advertises on the App Store. A postback names its app by App Store id
//! (`app-id`, `advertised-item-identifier`), and that id finds the one tenant that registered
//! it, so an App Store id belongs to one tenant at a time.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::error::FieldError;

/// Apps a tenant may register.
pub const MAX_APPS: usize = 200;
pub const MAX_NAME: usize = 128;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct App {
    pub id: String,
    pub app_store_id: u64,
    pub name: String,
    /// Whether AdAttributionKit postbacks signed with Apple's development keys count (while
    /// an integration is tested); they are stored either way.
    #[serde(default)]
    pub count_development_postbacks: bool,
    pub created_at: String,
}

/// Who registered an App Store id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppOwner {
    pub tenant_id: String,
    pub app_id: String,
}

const FIELDS: [&str; 3] = ["app_store_id", "name", "count_development_postbacks"];

impl App {
    /// A new app from `{app_store_id, name, count_development_postbacks?}`.
    pub fn new(body: &Map<String, Value>) -> Result<App, FieldError> {
        if let Some(field) = body.keys().find(|k| !FIELDS.contains(&k.as_str())) {
            return Err(FieldError::new(field, "is not an app field"));
        }
        // App Store ids are positive integers; Apple's JSON sends them as numbers, people
        // often as strings.
        let app_store_id = match body.get("app_store_id") {
            None | Some(Value::Null) => return Err(FieldError::new("app_store_id", "is required")),
            Some(v) => v
                .as_u64()
                .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
                .filter(|n| *n > 0)
                .ok_or_else(|| {
                    FieldError::new(
                        "app_store_id",
                        "must be a positive integer (the App Store id)",
                    )
                })?,
        };
        let name = match body.get("name") {
            Some(Value::String(s))
                if !s.trim().is_empty()
                    && s.chars().count() <= MAX_NAME
                    && !s.chars().any(char::is_control) =>
            {
                s.clone()
            }
            None => return Err(FieldError::new("name", "is required")),
            Some(_) => {
                return Err(FieldError::new(
                    "name",
                    format!("must be a non-empty string of at most {MAX_NAME} characters"),
                ))
            }
        };
        let count_development_postbacks = match body.get("count_development_postbacks") {
            None | Some(Value::Null) => false,
            Some(Value::Bool(b)) => *b,
            Some(_) => {
                return Err(FieldError::new(
                    "count_development_postbacks",
                    "must be true or false",
                ))
            }
        };
        Ok(App {
            id: format!("app_{}", hex::encode(rand::random::<[u8; 8]>())),
            app_store_id,
            name,
            count_development_postbacks,
            created_at: crate::time::now_rfc3339(),
        })
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn new_apps_are_validated_field_by_field() {
        let ok = App::new(
            json!({"app_store_id": "525463029", "name": "Demo"})
                .as_object()
                .unwrap(),
        )
        .unwrap();
        assert_eq!(
            (ok.app_store_id, ok.count_development_postbacks),
            (525463029, false)
        );
        let cases = [
            (json!({"name": "x"}), "app_store_id"),
            (json!({"app_store_id": 0, "name": "x"}), "app_store_id"),
            (json!({"app_store_id": "12a", "name": "x"}), "app_store_id"),
            (json!({"app_store_id": -4, "name": "x"}), "app_store_id"),
            (json!({"app_store_id": 1}), "name"),
            (json!({"app_store_id": 1, "name": " "}), "name"),
            (json!({"app_store_id": 1, "name": "x".repeat(129)}), "name"),
            (
                json!({"app_store_id": 1, "name": "x", "count_development_postbacks": 1}),
                "count_development_postbacks",
            ),
            (
                json!({"app_store_id": 1, "name": "x", "bundle": "y"}),
                "bundle",
            ),
        ];
        for (body, field) in cases {
            assert_eq!(
                App::new(body.as_object().unwrap()).unwrap_err().field,
                field,
                "{body}"
            );
        }
    }
}
