#![allow(dead_code)]

use serde_json::{Value, json};

pub fn auth() -> Value {
    json!({"script_name": "sgcache", "script_key": "test-key"})
}

pub fn quiet_auth() -> Value {
    json!({"script_name": "quiet_script", "script_key": "quiet-key"})
}

/// POST a raw body; returns (status, body text).
pub async fn post_raw(url: &str, body: String) -> Result<(u16, String), String> {
    let client = awc::Client::builder()
        .timeout(std::time::Duration::from_secs(20))
        .finish();
    let mut resp = client
        .post(format!("{url}/api3/json"))
        .insert_header(("content-type", "application/json; charset=utf-8"))
        .send_body(body)
        .await
        .map_err(|e| e.to_string())?;
    let status = resp.status().as_u16();
    let bytes = resp
        .body()
        .limit(64 * 1024 * 1024)
        .await
        .map_err(|e| e.to_string())?;
    Ok((status, String::from_utf8_lossy(&bytes).into_owned()))
}

/// Call a method; returns the decoded body (either `{"results": ..}` or a fault).
pub async fn call_with(url: &str, auth: Value, method: &str, args: Value) -> Value {
    let mut params = vec![auth];
    if !args.is_null() {
        params.push(args);
    }
    let body = json!({"method_name": method, "params": params}).to_string();
    let (status, text) = post_raw(url, body).await.expect("request");
    assert_eq!(status, 200, "{text}");
    serde_json::from_str(&text).expect("JSON body")
}

pub async fn call(url: &str, method: &str, args: Value) -> Value {
    call_with(url, auth(), method, args).await
}

/// Call and unwrap `results` (panics on a fault).
pub async fn results(url: &str, method: &str, args: Value) -> Value {
    let r = call(url, method, args).await;
    assert!(r.get("exception").is_none(), "unexpected fault: {r}");
    r["results"].clone()
}

pub fn fields(v: Value) -> Value {
    Value::Array(
        v.as_object()
            .expect("object")
            .iter()
            .map(|(k, v)| json!({"field_name": k, "value": v}))
            .collect(),
    )
}

pub async fn find(url: &str, ty: &str, conditions: Value, return_fields: Value) -> Value {
    results(
        url,
        "read",
        json!({"type": ty, "filters": {"logical_operator": "and", "conditions": conditions},
               "return_fields": return_fields, "return_only": "active",
               "paging": {"entities_per_page": 500, "current_page": 1}}),
    )
    .await
}

pub fn ids(read_result: &Value) -> Vec<i64> {
    read_result["entities"]
        .as_array()
        .expect("entities")
        .iter()
        .map(|e| e["id"].as_i64().expect("id"))
        .collect()
}
