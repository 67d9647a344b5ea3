//! A small blocking client for the parent's HTTP API (demo, benchmarks, tests).

use serde_json::Value;

/// Status and JSON body of one response.
#[derive(Clone, Debug)]
pub struct Reply {
    pub status: u16,
    pub body: Value,
    /// Response headers (lower-case names).
    pub headers: Vec<(String, String)>,
}

impl Reply {
    /// The problem+json `code`, if any.
    pub fn code(&self) -> Option<&str> {
        self.body.get("code").and_then(Value::as_str)
    }

    /// A response header.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    /// `body[key]` as a string (empty if absent).
    pub fn str(&self, key: &str) -> String {
        self.body.get(key).and_then(Value::as_str).unwrap_or_default().to_string()
    }

    /// `body[key]` as an unsigned number (0 if absent).
    pub fn u64(&self, key: &str) -> u64 {
        self.body.get(key).and_then(Value::as_u64).unwrap_or(0)
    }
}

/// The API at `base` (e.g. `http://127.0.0.1:8787`) with a bearer token.
#[derive(Clone)]
pub struct Api {
    pub base: String,
    pub token: String,
    agent: ureq::Agent,
}

impl Api {
    pub fn new(base: impl Into<String>, token: impl Into<String>) -> Self {
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(std::time::Duration::from_secs(60)))
            .build()
            .new_agent();
        Self { base: base.into(), token: token.into(), agent }
    }

    /// The same API with another token.
    pub fn with_token(&self, token: &str) -> Self {
        Self { base: self.base.clone(), token: token.to_string(), agent: self.agent.clone() }
    }

    fn finish(
        result: Result<ureq::http::Response<ureq::Body>, ureq::Error>,
    ) -> Result<Reply, String> {
        let mut response = result.map_err(|e| e.to_string())?;
        let status = response.status().as_u16();
        let headers = response
            .headers()
            .iter()
            .map(|(n, v)| (n.as_str().to_string(), v.to_str().unwrap_or_default().to_string()))
            .collect();
        let text = response.body_mut().read_to_string().map_err(|e| e.to_string())?;
        let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
        Ok(Reply { status, body, headers })
    }

    /// `POST path` with a JSON body.
    pub fn post(&self, path: &str, body: &Value) -> Result<Reply, String> {
        Self::finish(
            self.agent
                .post(&format!("{}{path}", self.base))
                .header("authorization", &format!("Bearer {}", self.token))
                .content_type("application/json")
                .send(body.to_string()),
        )
    }

    /// `POST path` with a JSON body and extra headers.
    pub fn post_with(
        &self,
        path: &str,
        body: &Value,
        headers: &[(&str, &str)],
    ) -> Result<Reply, String> {
        let mut request = self
            .agent
            .post(&format!("{}{path}", self.base))
            .header("authorization", &format!("Bearer {}", self.token))
            .content_type("application/json");
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        Self::finish(request.send(body.to_string()))
    }

    /// `POST path` with raw bytes (for malformed-input tests).
    pub fn post_raw(&self, path: &str, body: &[u8], content_type: &str) -> Result<Reply, String> {
        Self::finish(
            self.agent
                .post(&format!("{}{path}", self.base))
                .header("authorization", &format!("Bearer {}", self.token))
                .content_type(content_type)
                .send(body),
        )
    }

    /// `GET path`.
    pub fn get(&self, path: &str) -> Result<Reply, String> {
        Self::finish(
            self.agent
                .get(&format!("{}{path}", self.base))
                .header("authorization", &format!("Bearer {}", self.token))
                .call(),
        )
    }

    /// `GET path` returning the raw text (metrics).
    pub fn get_text(&self, path: &str) -> Result<(u16, String), String> {
        let mut r =
            self.agent.get(&format!("{}{path}", self.base)).call().map_err(|e| e.to_string())?;
        let status = r.status().as_u16();
        Ok((status, r.body_mut().read_to_string().map_err(|e| e.to_string())?))
    }
}
