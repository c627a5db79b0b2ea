//! `GET /swagger.json`: the user's own swagger file from the app root when there is one (as
//! azmlinfsrv reads `swagger.json`, `swagger2.json`, `swagger3.json`), else a generated document
//! describing `/`, `/score` and `/swagger.json` with free-form input and output, as azmlinfsrv
//! generates for an undecorated `run()`.

use std::path::Path;

use serde_json::{json, Value};

pub struct Swagger {
    v2: Value,
    v3: Value,
}

pub const VERSIONS: &str = "2, 3, 3.1";

impl Swagger {
    pub fn load(app_root: &Path, title: &str, scoring_path: &str) -> Result<Swagger, String> {
        let read = |name: &str| -> Result<Option<Value>, String> {
            let path = app_root.join(name);
            match std::fs::read(&path) {
                Ok(bytes) => serde_json::from_slice(&bytes)
                    .map(Some)
                    .map_err(|err| format!("{}: not JSON: {err}", path.display())),
                Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(None),
                Err(err) => Err(format!("cannot read {}: {err}", path.display())),
            }
        };
        let v2 = match read("swagger.json")? {
            Some(v) => v,
            None => read("swagger2.json")?.unwrap_or_else(|| generated_v2(title, scoring_path)),
        };
        let v3 = read("swagger3.json")?.unwrap_or_else(|| generated_v3(title, scoring_path));
        Ok(Swagger { v2, v3 })
    }

    /// The document for `?version=`, or the message azmlinfsrv gives for an unknown version.
    pub fn get(&self, version: Option<&str>) -> Result<Value, String> {
        match version.unwrap_or("2") {
            "2" | "2.0" => Ok(self.v2.clone()),
            "3" | "3.0" => Ok(self.v3.clone()),
            "3.1" => {
                let mut v = self.v3.clone();
                v["openapi"] = json!("3.1.0");
                Ok(v)
            }
            other => Err(format!(
                "Swagger version [{other}] is not valid. Supported versions: [{VERSIONS}]."
            )),
        }
    }
}

fn error_response() -> Value {
    json!({"type": "object", "properties": {"message": {"type": "string"}}})
}

fn generated_v2(title: &str, scoring_path: &str) -> Value {
    json!({
        "swagger": "2.0",
        "info": {"title": title, "description": format!("API specification for the Terrarium deployment {title}"), "version": "1.0"},
        "schemes": ["http"],
        "consumes": ["application/json"],
        "produces": ["application/json"],
        "paths": {
            "/": {"get": {"operationId": "ServiceHealthCheck",
                "description": "Simple health check endpoint to ensure the service is up at any given point.",
                "responses": {"200": {"description": "The service is up; the body is 'Healthy'.", "schema": {"type": "string"}},
                              "default": {"description": "The service failed to execute due to an error.", "schema": {"$ref": "#/definitions/ErrorResponse"}}}}},
            scoring_path: {"post": {"operationId": "RunMLService",
                "description": "Run web service's model and get the prediction output",
                "parameters": [{"name": "serviceInputPayload", "in": "body", "description": "The input payload for the entry script's run().", "schema": {"$ref": "#/definitions/ServiceInput"}}],
                "responses": {"200": {"description": "The service processed the input correctly and provided a result prediction, if applicable.", "schema": {"$ref": "#/definitions/ServiceOutput"}},
                              "default": {"description": "The service failed to execute due to an error.", "schema": {"$ref": "#/definitions/ErrorResponse"}}}}},
            "/swagger.json": {"get": {"operationId": "GetSwaggerSpec", "description": "Get the Swagger specification.",
                "parameters": [{"name": "version", "in": "query", "required": false, "type": "integer", "enum": [2, 3]}],
                "responses": {"200": {"description": "The Swagger specification.", "schema": {"type": "string"}},
                              "default": {"description": "The service failed to execute due to an error.", "schema": {"$ref": "#/definitions/ErrorResponse"}}}}}
        },
        "definitions": {
            "ServiceInput": {"type": "object", "example": {}},
            "ServiceOutput": {"type": "object", "example": {}},
            "ErrorResponse": error_response()
        }
    })
}

fn generated_v3(title: &str, scoring_path: &str) -> Value {
    let error = json!({"description": "The service failed to execute due to an error.",
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorResponse"}}}});
    json!({
        "openapi": "3.0.1",
        "info": {"title": title, "description": format!("API specification for the Terrarium deployment {title}"), "version": "1.0"},
        "paths": {
            "/": {"get": {"operationId": "ServiceHealthCheck", "description": "Simple health check endpoint to ensure the service is up at any given point.",
                "responses": {"200": {"description": "The service is up; the body is 'Healthy'.", "content": {"text/plain": {"schema": {"type": "string"}}}}, "default": error}}},
            scoring_path: {"post": {"operationId": "RunMLService", "description": "Run web service's model and get the prediction output",
                "requestBody": {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/ServiceInput"}}}},
                "responses": {"200": {"description": "The service processed the input correctly and provided a result prediction, if applicable.",
                    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ServiceOutput"}}}}, "default": error}}}
        },
        "components": {"schemas": {
            "ServiceInput": {"type": "object", "example": {}},
            "ServiceOutput": {"type": "object", "example": {}},
            "ErrorResponse": error_response()
        }}
    })
}
