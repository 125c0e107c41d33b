//! The HTTP front: an actix-web server on its own thread and actix `System`.

use crate::api::{Shared, record_of};
use crate::faults::{Injected, error_page};
use actix_web::dev::ServerHandle;
use actix_web::{App, HttpResponse, HttpServer, http::StatusCode, web};
use serde_json::Value;
use std::net::TcpListener;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// A running server (on one listening socket).
pub struct ServerRun {
    handle: ServerHandle,
    thread: Option<JoinHandle<()>>,
    open_connections: Arc<AtomicUsize>,
}

/// Counts one accepted connection while its dispatcher (which owns the socket) lives: the
/// guard sits in the connection's data, dropped with it.
struct ConnectionGuard(Arc<AtomicUsize>);

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// How long `stop` waits for the workers to drop their connections.
const CONNECTIONS_CLOSE_WITHIN: Duration = Duration::from_secs(10);

impl ServerRun {
    /// Stop the server, dropping open connections, and return once every connection it
    /// accepted is closed. A forced actix stop only signals the worker threads, so without
    /// that wait a kept-alive connection could still be answered after `stop` returned, and
    /// a "down" site would answer its clients.
    pub fn stop(mut self) {
        // `ServerHandle::stop` sends the command eagerly; the returned future only awaits completion.
        drop(self.handle.stop(false));
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        let deadline = Instant::now() + CONNECTIONS_CLOSE_WITHIN;
        while self.open_connections.load(Ordering::SeqCst) > 0 {
            if Instant::now() >= deadline {
                eprintln!(
                    "mock site: {} connections still open {CONNECTIONS_CLOSE_WITHIN:?} after stop",
                    self.open_connections.load(Ordering::SeqCst)
                );
                return;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }
}

async fn api(state: web::Data<Shared>, body: web::Bytes) -> HttpResponse {
    let parsed: Result<Value, _> = serde_json::from_slice(&body);
    let (latency, injected) = {
        let mut st = state.lock().expect("mock site state lock");
        let rec = match &parsed {
            Ok(v) => record_of(v),
            Err(_) => record_of(&Value::String(String::from_utf8_lossy(&body).into_owned())),
        };
        st.requests.push(rec);
        let inj = st.faults.decide_for(parsed.as_ref().ok());
        (st.faults.latency, inj)
    };
    // The lock is released before sleeping: never hold the std mutex across an await.
    if !latency.is_zero() {
        actix_rt::time::sleep(latency).await;
    }
    match injected {
        Injected::Status(code) => {
            let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            return HttpResponse::build(status)
                .content_type("text/html; charset=utf-8")
                .body(error_page(code));
        }
        Injected::Garbage => {
            return HttpResponse::Ok()
                .content_type("application/json; charset=utf-8")
                .body("<html><body>this is not JSON {\"results\": </body></html>");
        }
        Injected::None => {}
    }
    let reply = match parsed {
        Ok(v) => state.lock().expect("mock site state lock").handle(&v),
        Err(e) => crate::error::Fault::new(format!("Couldn't parse the request body as JSON: {e}"))
            .to_body(),
    };
    HttpResponse::Ok()
        .content_type("application/json; charset=utf-8")
        .body(reply.to_string())
}

async fn not_found() -> HttpResponse {
    HttpResponse::NotFound()
        .content_type("text/html; charset=utf-8")
        .body(error_page(404))
}

/// Serve on `listener` (bound and listening) on a new thread, once it is running.
pub fn spawn(shared: Shared, listener: TcpListener, workers: usize) -> std::io::Result<ServerRun> {
    let port = listener.local_addr()?.port();
    let (tx, rx) = mpsc::channel::<std::io::Result<ServerHandle>>();
    let open_connections = Arc::new(AtomicUsize::new(0));
    let counted = open_connections.clone();
    let thread = std::thread::Builder::new()
        .name(format!("mock-site-{port}"))
        .spawn(move || {
            let sys = actix_rt::System::new();
            sys.block_on(async move {
                let data = web::Data::new(shared);
                let server = HttpServer::new(move || {
                    App::new()
                        .app_data(data.clone())
                        .app_data(web::PayloadConfig::new(256 * 1024 * 1024))
                        .route("/api3/json", web::post().to(api))
                        .route("/{prefix:.*}/api3/json", web::post().to(api))
                        .route("/upload/{tail:.*}", web::post().to(crate::files::upload))
                        .route(
                            "/file_serve/{tail:.*}",
                            web::get().to(crate::files::file_serve),
                        )
                        .route(
                            "/thumbnail/{tail:.*}",
                            web::get().to(crate::files::thumbnail),
                        )
                        .default_service(web::to(not_found))
                })
                .on_connect(move |_, data| {
                    counted.fetch_add(1, Ordering::SeqCst);
                    data.insert(ConnectionGuard(counted.clone()));
                })
                .workers(workers.max(1))
                .disable_signals()
                .shutdown_timeout(0)
                .listen(listener);
                let server = match server {
                    Ok(s) => s,
                    Err(e) => {
                        let _ = tx.send(Err(e));
                        return;
                    }
                };
                let running = server.run();
                let _ = tx.send(Ok(running.handle()));
                let _ = running.await;
            });
        })?;
    match rx.recv() {
        Ok(Ok(handle)) => Ok(ServerRun {
            handle,
            thread: Some(thread),
            open_connections,
        }),
        Ok(Err(e)) => {
            let _ = thread.join();
            Err(e)
        }
        Err(_) => {
            let _ = thread.join();
            Err(std::io::Error::other(
                "mock site server thread exited before binding",
            ))
        }
    }
}
