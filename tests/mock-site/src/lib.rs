//! An in-memory mock of a Shotgun (ShotGrid) site speaking the api3 JSON protocol, with a
//! faithful event log, for sgcache's tests and benchmarks.
//!
//! ```no_run
//! use sgcache_mock_site::MockSite;
//! use serde_json::json;
//! let site = MockSite::start();
//! let shot = site.create("Shot", json!({"code": "sh010"}));
//! println!("{} has shot {}", site.url(), shot["id"]);
//! ```

pub mod api;
pub mod error;
pub mod events;
pub mod faults;
pub mod files;
pub mod filters;
pub mod read;
pub mod schema;
pub mod semantics;
pub mod server;
pub mod store;

pub use api::{RecordedRequest, ScriptConfig, UserConfig};
pub use error::Fault;
pub use schema::Schema;
pub use semantics::{EmptyIn, EmptyPath, NullsAt, Semantics, TextOrder};
pub use store::ReverseField;

use api::{Shared, SiteState};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::net::{SocketAddr, TcpListener};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use store::{Actor, FieldWrite, Store, fields_from_object, link};

/// Configuration of a mock site.
#[derive(Debug, Clone)]
pub struct MockConfig {
    /// Schema served and enforced (default: the repository fixture).
    pub schema: Schema,
    /// Known scripts (default `sgcache`/`test-key` with events, `quiet_script`/`quiet-key` without).
    pub scripts: Vec<ScriptConfig>,
    /// Human users accepted with `user_login`/`user_password` (default none).
    pub users: Vec<UserConfig>,
    /// The `info` reply.
    pub info: Value,
    /// actix-web workers (default 1).
    pub workers: usize,
    /// Port to bind on 127.0.0.1 (0 = any free port).
    pub port: u16,
    /// First id of every entity type and of the event log (default 1).
    pub first_id: i64,
    /// Refuse links to entities that do not exist (default true).
    pub validate_links: bool,
    /// Link field pairs kept consistent, with back-reference events (pairs missing from the
    /// schema are ignored).
    pub reverse_fields: Vec<ReverseField>,
    /// The rules where the documentation is silent (default: the mock's historical choices).
    pub semantics: Semantics,
}

impl Default for MockConfig {
    fn default() -> Self {
        MockConfig {
            schema: Schema::fixture(),
            scripts: vec![
                ScriptConfig::new("sgcache", "test-key", true),
                ScriptConfig::new("quiet_script", "quiet-key", false),
            ],
            users: Vec::new(),
            info: json!({
                "version": [8, 50, 0],
                "full_version": [8, 50, 0, 0],
                "api_max_entities_per_page": 500,
                "s3_uploads_enabled": false,
                "user_authentication_method": "default",
            }),
            workers: 1,
            port: 0,
            first_id: 1,
            validate_links: true,
            reverse_fields: events::default_reverse_fields(),
            semantics: Semantics::default(),
        }
    }
}

impl MockConfig {
    /// Default configuration with a schema loaded from a `schema_read()` JSON file.
    pub fn with_schema_file(path: impl AsRef<std::path::Path>) -> Result<MockConfig, String> {
        let text = std::fs::read_to_string(path.as_ref())
            .map_err(|e| format!("{}: {e}", path.as_ref().display()))?;
        Ok(MockConfig {
            schema: Schema::from_strs(&text, None)?,
            ..MockConfig::default()
        })
    }
}

/// A listener on 127.0.0.1 bound to an explicit port, never to port 0: Linux gives a port
/// that `bind` chose back when its listening socket is shut down, so a paused site could
/// lose its port to another test's site, and its clients would reach that one instead. A
/// port named in `bind` stays held by the shut-down socket. For `port` 0, a free port is
/// found first and then bound by number (again if another socket took it in between).
fn bind_held_port(port: u16) -> std::io::Result<TcpListener> {
    let localhost = |port| SocketAddr::from(([127, 0, 0, 1], port));
    if port != 0 {
        return TcpListener::bind(localhost(port));
    }
    let mut last_err = None;
    for _ in 0..100 {
        let free = TcpListener::bind(localhost(0))?.local_addr()?.port();
        match TcpListener::bind(localhost(free)) {
            Ok(listener) => return Ok(listener),
            Err(e) => last_err = Some(e),
        }
    }
    Err(last_err.expect("at least one try"))
}

/// A running mock site. Dropping it stops the server.
pub struct MockSite {
    shared: Shared,
    addr: SocketAddr,
    workers: usize,
    run: Mutex<Option<server::ServerRun>>,
    /// The listening socket, held by the site itself whether its server runs or not: a paused
    /// site keeps its port (shut down, so connections are refused), where a port given back
    /// could be taken by another test's server, which the paused site's clients would then
    /// reach instead.
    port: Mutex<Option<TcpListener>>,
    default_script: String,
    quiet_script: Option<String>,
}

impl MockSite {
    /// Start with the default configuration.
    pub fn start() -> MockSite {
        MockSite::start_with(MockConfig::default())
    }

    /// Start with a configuration. Blocks until the listener is bound.
    pub fn start_with(config: MockConfig) -> MockSite {
        let schema = Arc::new(config.schema.clone());
        let mut store = Store::new(schema.clone(), config.first_id);
        store.validate_links = config.validate_links;
        store.semantics = config.semantics;
        let bootstrap = Actor {
            link: Value::Null,
            generate_events: false,
            session_uuid: Value::Null,
        };
        let mut scripts = Vec::new();
        for s in &config.scripts {
            let id = if schema.has_type("ApiUser") {
                let mut fields = vec![FieldWrite::set("firstname", json!(s.name))];
                if schema
                    .data_type("ApiUser", "generate_event_log_entries")
                    .is_some()
                {
                    fields.push(FieldWrite::set(
                        "generate_event_log_entries",
                        json!(s.generate_events),
                    ));
                }
                store
                    .seed_row("ApiUser", &fields, &bootstrap)
                    .expect("script ApiUser rows are valid")
            } else {
                store.alloc_id("ApiUser")
            };
            scripts.push((s.clone(), id));
        }
        let mut users = Vec::new();
        for u in &config.users {
            let id = if schema.has_type("HumanUser") {
                let mut fields = vec![FieldWrite::set("name", json!(u.name))];
                if schema.data_type("HumanUser", "login").is_some() {
                    fields.push(FieldWrite::set("login", json!(u.login)));
                }
                store
                    .seed_row("HumanUser", &fields, &bootstrap)
                    .expect("HumanUser rows are valid")
            } else {
                store.alloc_id("HumanUser")
            };
            users.push((u.clone(), id));
        }
        store.reverse = events::active_reverse_fields(&store, config.reverse_fields.clone());
        let default_script = config
            .scripts
            .iter()
            .find(|s| s.generate_events)
            .or(config.scripts.first())
            .map(|s| s.name.clone())
            .unwrap_or_default();
        let quiet_script = config
            .scripts
            .iter()
            .find(|s| !s.generate_events)
            .map(|s| s.name.clone());
        let state = SiteState {
            store,
            scripts,
            users,
            sessions: HashMap::new(),
            info: config.info.clone(),
            requests: Vec::new(),
            faults: Default::default(),
            session_counter: 0,
        };
        let shared: Shared = Arc::new(Mutex::new(state));
        let listener = bind_held_port(config.port).expect("mock site failed to bind");
        let bound = listener.local_addr().expect("the mock site's address");
        let run = server::spawn(
            shared.clone(),
            listener.try_clone().expect("the mock site's socket"),
            config.workers,
        )
        .expect("mock site failed to start");
        MockSite {
            shared,
            addr: bound,
            workers: config.workers,
            run: Mutex::new(Some(run)),
            port: Mutex::new(Some(listener)),
            default_script,
            quiet_script,
        }
    }

    /// `http://127.0.0.1:PORT`
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    fn state(&self) -> MutexGuard<'_, SiteState> {
        self.shared.lock().expect("mock site state lock")
    }

    /// Stop the server (idempotent). The data stays readable through the direct API; the port
    /// stays the site's, refusing connections.
    pub fn stop(&self) {
        if let Some(run) = self.run.lock().expect("server lock").take() {
            run.stop();
            if let Some(listener) = &*self.port.lock().expect("port lock") {
                // A listening socket shut down refuses connections and keeps its port.
                let _ = socket2::SockRef::from(listener).shutdown(std::net::Shutdown::Both);
            }
        }
    }

    /// Real outage: stop the listener; clients get "connection refused" until `resume`.
    pub fn pause(&self) {
        self.stop();
    }

    /// Rebind the same port after `pause`.
    pub fn resume(&self) {
        let mut guard = self.run.lock().expect("server lock");
        if guard.is_some() {
            return;
        }
        let mut port = self.port.lock().expect("port lock");
        // A shut-down socket cannot listen again: a new one takes the same port.
        drop(port.take());
        let mut last_err = None;
        for _ in 0..100 {
            let started = TcpListener::bind(self.addr).and_then(|listener| {
                let run = server::spawn(self.shared.clone(), listener.try_clone()?, self.workers)?;
                Ok((listener, run))
            });
            match started {
                Ok((listener, run)) => {
                    *port = Some(listener);
                    *guard = Some(run);
                    return;
                }
                Err(e) => {
                    last_err = Some(e);
                    std::thread::sleep(Duration::from_millis(20));
                }
            }
        }
        panic!("mock site could not rebind {}: {last_err:?}", self.addr);
    }

    /// Is the listener currently up?
    pub fn is_listening(&self) -> bool {
        self.run.lock().expect("server lock").is_some()
    }

    // ----- acting as a script -------------------------------------------------------------

    /// A handle acting as the named script (panics if the script is unknown).
    pub fn as_script(&self, name: &str) -> ScriptHandle<'_> {
        let actor = self
            .state()
            .script_actor(name)
            .unwrap_or_else(|| panic!("unknown script '{name}'"));
        ScriptHandle { site: self, actor }
    }

    /// A handle acting as the default script (events on).
    pub fn script(&self) -> ScriptHandle<'_> {
        self.as_script(&self.default_script)
    }

    /// A handle acting as the script without event generation (`quiet_script`).
    pub fn quiet(&self) -> ScriptHandle<'_> {
        let name = self
            .quiet_script
            .clone()
            .expect("no script with generate_events = false configured");
        self.as_script(&name)
    }

    /// Create as the default script; returns the full stored record. Panics on a fault.
    pub fn create(&self, ty: &str, fields: Value) -> Value {
        self.script().create(ty, fields)
    }

    /// Update as the default script; returns the full stored record. Panics on a fault.
    pub fn update(&self, ty: &str, id: i64, fields: Value) -> Value {
        self.script().update(ty, id, fields)
    }

    /// Retire as the default script (`false` if already retired). Panics if it never existed.
    pub fn delete(&self, ty: &str, id: i64) -> bool {
        self.script().delete(ty, id)
    }

    /// Revive as the default script (`false` if active). Panics if it never existed.
    pub fn revive(&self, ty: &str, id: i64) -> bool {
        self.script().revive(ty, id)
    }

    // ----- inspection -------------------------------------------------------------------

    /// Full record (every field, links with `name`, plus `"_retired": bool`), active or retired.
    pub fn entity(&self, ty: &str, id: i64) -> Option<Value> {
        let st = self.state();
        st.store.get(ty, id).map(|r| st.store.full_record(ty, r))
    }

    /// Every entity of a type (active and retired) in id order, as `entity()` shapes them.
    pub fn entities(&self, ty: &str) -> Vec<Value> {
        let st = self.state();
        st.store
            .table(ty)
            .map(|t| t.values().map(|r| st.store.full_record(ty, r)).collect())
            .unwrap_or_default()
    }

    /// Every entity of a type as stored (active and retired, id order): like [`MockSite::entities`]
    /// but links to retired entities are kept, as a cache that saw them before the retirement
    /// holds them.
    pub fn stored_entities(&self, ty: &str) -> Vec<Value> {
        let st = self.state();
        st.store
            .table(ty)
            .map(|t| t.values().map(|r| st.store.stored_record(ty, r)).collect())
            .unwrap_or_default()
    }

    /// Every visible EventLogEntry (as `read` would show it: `entity` null while retired).
    pub fn events(&self) -> Vec<Value> {
        let st = self.state();
        st.store
            .event_rows()
            .filter(|r| {
                r.fields
                    .get("id")
                    .and_then(Value::as_i64)
                    .is_some_and(|id| st.store.event_visible(id))
            })
            .map(|r| {
                let mut v = st.store.full_record(store::EVENT_TYPE, r);
                if let Some(o) = v.as_object_mut() {
                    o.remove("_retired");
                }
                v
            })
            .collect()
    }

    /// The highest event id allocated so far (visible, held or burnt); 0 if none.
    pub fn last_event_id(&self) -> i64 {
        let mut st = self.state();
        let next = st.store.alloc_id(store::EVENT_TYPE);
        // give the id back: allocation is a plain counter
        st.store.unalloc_id(store::EVENT_TYPE, next);
        next - 1
    }

    /// Every API call received over HTTP.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.state().requests.clone()
    }

    /// How many API calls were received over HTTP (waits for the one being answered, which
    /// holds the site's state).
    pub fn request_count(&self) -> usize {
        self.state().requests.len()
    }

    /// Forget the recorded requests.
    pub fn clear_requests(&self) {
        self.state().requests.clear();
    }

    /// The loaded schema.
    pub fn schema(&self) -> Arc<Schema> {
        self.state().store.schema.clone()
    }

    /// Shift the site clock (affects `created_at`, `updated_at` and event times).
    pub fn set_now_offset(&self, offset: chrono::Duration) {
        self.state().store.now_offset = offset;
    }

    /// Stop the site clock at `at` (`None` lets it run again): two sites given the same writes
    /// then give byte-identical answers.
    pub fn freeze_clock(&self, at: Option<chrono::DateTime<chrono::Utc>>) {
        self.state().store.frozen_now = at;
    }

    /// Switch the site's rules (sorting, relative dates, empty paths and lists) from now on.
    pub fn set_semantics(&self, semantics: Semantics) {
        self.state().store.semantics = semantics;
    }

    /// The site clock (UTC, whole seconds).
    pub fn now(&self) -> chrono::DateTime<chrono::Utc> {
        self.state().store.now()
    }

    // ----- event log ordering -----------------------------------------------------------

    /// Events created from now on get ids but stay invisible until `release_events`.
    pub fn hold_events(&self) {
        events::hold(&mut self.state().store);
    }

    /// Make held events visible and stop holding.
    pub fn release_events(&self) {
        events::release(&mut self.state().store);
    }

    /// Consume an event id that will never appear; returns it.
    pub fn burn_event_id(&self) -> i64 {
        self.state().store.burn_event_id()
    }

    // ----- seeding ----------------------------------------------------------------------

    /// Insert `n` entities quickly (values validated, no events, no back-references).
    /// Returns the new ids. Panics on an invalid value.
    pub fn seed(&self, ty: &str, n: usize, mut f: impl FnMut(usize) -> Value) -> Vec<i64> {
        let mut st = self.state();
        let actor = st
            .script_actor(&self.default_script)
            .expect("default script");
        (0..n)
            .map(|i| {
                let fields = fields_from_object(&f(i));
                st.store
                    .seed_row(ty, &fields, &actor)
                    .unwrap_or_else(|e| panic!("seed {ty} #{i}: {e}"))
            })
            .collect()
    }

    /// Like `seed`, but as normal creates by the default script (events logged).
    pub fn seed_with_events(
        &self,
        ty: &str,
        n: usize,
        mut f: impl FnMut(usize) -> Value,
    ) -> Vec<i64> {
        let h = self.script();
        (0..n)
            .map(|i| h.create(ty, f(i))["id"].as_i64().unwrap_or_default())
            .collect()
    }

    // ----- faults -----------------------------------------------------------------------

    /// Delay every API response.
    pub fn set_latency(&self, latency: Duration) {
        self.state().faults.latency = latency;
    }

    /// The next `n` API requests answer `status` with an HTML body.
    pub fn fail_next(&self, n: u32, status: u16) {
        let mut st = self.state();
        st.faults.fail_next = n;
        st.faults.fail_status = status;
    }

    /// While down, every API request gets a 503 (the listener stays up; see `pause`).
    pub fn set_down(&self, down: bool) {
        self.state().faults.down = down;
    }

    /// While on, API requests get HTTP 200 with a body that is not JSON.
    pub fn set_garbage(&self, garbage: bool) {
        self.state().faults.garbage = garbage;
    }

    /// While set, every `read` of `entity_type` gets a 503 (other reads are answered).
    pub fn fail_reads_of(&self, entity_type: &str, failing: bool) {
        let reads = &mut self.state().faults.failing_reads;
        if failing {
            reads.insert(entity_type.to_owned());
        } else {
            reads.remove(entity_type);
        }
    }

    /// Clear every injected fault.
    pub fn clear_faults(&self) {
        self.state().faults = Default::default();
    }

    /// Run a closure on the raw state (escape hatch for unusual tests).
    pub fn with_state<R>(&self, f: impl FnOnce(&mut SiteState) -> R) -> R {
        f(&mut self.state())
    }
}

impl Drop for MockSite {
    fn drop(&mut self) {
        if let Ok(mut g) = self.run.lock()
            && let Some(run) = g.take()
        {
            run.stop();
        }
    }
}

/// Writes acting as one script (events on or off according to its configuration).
pub struct ScriptHandle<'a> {
    site: &'a MockSite,
    actor: Actor,
}

impl ScriptHandle<'_> {
    /// The acting `ApiUser` link.
    pub fn user(&self) -> Value {
        self.actor.link.clone()
    }

    pub fn try_create(&self, ty: &str, fields: Value) -> Result<Value, Fault> {
        let mut st = self.site.state();
        let id = st
            .store
            .create(ty, &fields_from_object(&fields), &self.actor, true)?;
        Ok(st
            .store
            .get(ty, id)
            .map(|r| st.store.full_record(ty, r))
            .unwrap_or(Value::Null))
    }

    pub fn create(&self, ty: &str, fields: Value) -> Value {
        self.try_create(ty, fields)
            .unwrap_or_else(|e| panic!("create {ty}: {e}"))
    }

    pub fn try_update(&self, ty: &str, id: i64, fields: Value) -> Result<Value, Fault> {
        self.try_update_with(ty, id, fields_from_object(&fields))
    }

    /// Update with explicit writes (for `multi_entity_update_mode`).
    pub fn try_update_with(
        &self,
        ty: &str,
        id: i64,
        writes: Vec<FieldWrite>,
    ) -> Result<Value, Fault> {
        let mut st = self.site.state();
        st.store.update(ty, id, &writes, &self.actor)?;
        Ok(st
            .store
            .get(ty, id)
            .map(|r| st.store.full_record(ty, r))
            .unwrap_or(Value::Null))
    }

    pub fn update(&self, ty: &str, id: i64, fields: Value) -> Value {
        self.try_update(ty, id, fields)
            .unwrap_or_else(|e| panic!("update {ty} #{id}: {e}"))
    }

    pub fn try_delete(&self, ty: &str, id: i64) -> Result<bool, Fault> {
        self.site.state().store.delete(ty, id, &self.actor)
    }

    pub fn delete(&self, ty: &str, id: i64) -> bool {
        self.try_delete(ty, id)
            .unwrap_or_else(|e| panic!("delete {ty} #{id}: {e}"))
    }

    pub fn try_revive(&self, ty: &str, id: i64) -> Result<bool, Fault> {
        self.site.state().store.revive(ty, id, &self.actor)
    }

    pub fn revive(&self, ty: &str, id: i64) -> bool {
        self.try_revive(ty, id)
            .unwrap_or_else(|e| panic!("revive {ty} #{id}: {e}"))
    }
}

pub use store::{FieldWrite as Write, UpdateMode};

/// Build a `{"type", "id"}` link.
pub fn entity_link(ty: &str, id: i64) -> Value {
    link(ty, id)
}
