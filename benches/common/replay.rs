//! A replaying HTTP server: the floor of an answer that costs no work to make.
//!
//! Each distinct request (path and body) is forwarded once to the upstream server and its
//! answer kept; every later request with the same path and body gets the kept bytes back
//! without asking. Served by actix-web with the daemon's worker count, it measures what the
//! HTTP round trip and the client's own decoding cost for the very answers sgcache gives.
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use actix_web::dev::ServerHandle;
use actix_web::web::{self, Bytes};
use actix_web::{App, HttpRequest, HttpResponse, HttpServer};

type Kept = Arc<Mutex<HashMap<(String, Bytes), (u16, Bytes)>>>;

pub struct Replay {
    pub url: String,
    handle: ServerHandle,
}

impl Replay {
    /// Starts the server in front of `upstream` (a base URL without a trailing slash).
    pub fn start(upstream: String, workers: usize) -> Replay {
        let listener = super::listener();
        let url = format!("http://{}", listener.local_addr().expect("address"));
        let kept = Kept::default();
        let state = (kept, upstream);
        let server = HttpServer::new(move || {
            App::new()
                .app_data(web::Data::new(state.clone()))
                .app_data(web::PayloadConfig::new(64 << 20))
                .default_service(web::to(answer))
        })
        .workers(workers)
        .listen(listener)
        .expect("listen")
        .run();
        let handle = server.handle();
        actix_web::rt::spawn(server);
        Replay { url, handle }
    }

    pub async fn stop(self) {
        self.handle.stop(true).await;
    }
}

async fn answer(req: HttpRequest, body: Bytes, state: web::Data<(Kept, String)>) -> HttpResponse {
    let (kept, upstream) = state.get_ref();
    let key = (req.path().to_owned(), body);
    let hit = kept.lock().expect("kept").get(&key).cloned();
    let (status, bytes) = match hit {
        Some(answer) => answer,
        None => {
            let client = awc::Client::default();
            let mut r = client
                .request(req.method().clone(), format!("{upstream}{}", key.0))
                .insert_header(("Content-Type", "application/json"))
                .send_body(key.1.clone())
                .await
                .expect("the upstream answers");
            let bytes = r.body().limit(64 << 20).await.expect("the upstream's body");
            let answer = (r.status().as_u16(), bytes);
            kept.lock().expect("kept").insert(key, answer.clone());
            answer
        }
    };
    HttpResponse::build(actix_web::http::StatusCode::from_u16(status).expect("status"))
        .content_type("application/json; charset=utf-8")
        .body(bytes)
}
