//! Test harness: the real server on 127.0.0.1:0 with a fresh temp data dir, spoken to over HTTP.

use std::time::Duration;

use reqwest::{Client, StatusCode, redirect};
use serde_json::Value;
use tempfile::TempDir;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use vitals::{App, Config};

/// Asks `probe` every `every` until it answers `Some`, for at most `limit`; then panics naming
/// `what` it waited for. Background work (scores, alert evaluation, detection, syncs,
/// deliveries) ends in its own time, so tests wait for what they check instead of sleeping.
pub async fn poll_until<T, F, Fut>(what: &str, limit: Duration, every: Duration, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if let Some(found) = probe().await {
            return found;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "waited {limit:?} for {what}"
        );
        tokio::time::sleep(every).await;
    }
}

/// [`poll_until`] with the usual pace: every 50 ms for at most 10 s.
pub async fn wait_until<T, F, Fut>(what: &str, probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    poll_until(
        what,
        Duration::from_secs(10),
        Duration::from_millis(50),
        probe,
    )
    .await
}

pub struct TestServer {
    pub base: String,
    pub app: App,
    handle: JoinHandle<anyhow::Result<()>>,
    pub dir: TempDir,
}

pub fn test_config(dir: &TempDir) -> Config {
    let mut config = Config::default();
    config.storage.data_dir = dir.path().display().to_string();
    config.storage.duckdb_threads = 1;
    config.storage.duckdb_memory_limit = "256MB".into();
    config.server.listen = "127.0.0.1:0".into();
    // Tests poll and ingest faster than a person; the budgets have their own tests.
    config.rate_limits.api_per_minute = 0;
    config.rate_limits.ingest_per_minute = 0;
    config.rate_limits.pages_per_minute = 0;
    // The fakes of outside services listen on loopback; the refusal has its own tests.
    config.outbound.allow_private_targets = vec!["127.0.0.1".into()];
    config
}

/// A server the helpers can talk to: the in-process [`TestServer`], or a `vitals serve`
/// process when a test measures the process itself.
pub trait Served {
    fn url(&self, path: &str) -> String;
}

impl Served for TestServer {
    fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }
}

impl TestServer {
    pub async fn start() -> TestServer {
        Self::start_with(tempfile::tempdir().expect("tempdir"), |_| {}).await
    }

    pub async fn start_with(dir: TempDir, tweak: impl FnOnce(&mut Config)) -> TestServer {
        let mut config = test_config(&dir);
        tweak(&mut config);
        let app = tokio::task::spawn_blocking(move || App::open(config))
            .await
            .unwrap()
            .expect("open app");
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let base = format!("http://{}", listener.local_addr().unwrap());
        let handle = tokio::spawn(vitals::serve(app.clone(), listener));
        TestServer {
            base,
            app,
            handle,
            dir,
        }
    }

    /// Stops the server gracefully and hands back its data dir.
    pub async fn stop(self) -> TempDir {
        self.app.shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(30), self.handle)
            .await
            .expect("server stops in time")
            .expect("join")
            .expect("serve ok");
        self.dir
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }
}

pub fn browser() -> Client {
    Client::builder()
        .cookie_store(true)
        .redirect(redirect::Policy::limited(5))
        .build()
        .unwrap()
}

pub fn no_redirects() -> Client {
    Client::builder()
        .cookie_store(true)
        .redirect(redirect::Policy::none())
        .build()
        .unwrap()
}

/// A browser session of a signed-in user.
pub struct Session {
    pub client: Client,
    pub slug: String,
}

pub const OWNER_EMAIL: &str = "owner@acme.test";
pub const PASSWORD: &str = "a-long-password-1";

/// Runs first-time setup (org + Owner) through the setup form.
pub async fn setup(server: &impl Served, org_name: &str, time_zone: &str) -> Session {
    let client = browser();
    let token = csrf(&client, &server.url("/setup")).await;
    let r = client
        .post(server.url("/setup"))
        .form(&[
            ("csrf", token.as_str()),
            ("org_name", org_name),
            ("time_zone", time_zone),
            ("currency", "EUR"),
            ("name", "Olivia Owner"),
            ("email", OWNER_EMAIL),
            ("password", PASSWORD),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let path = r.url().path().to_string();
    let slug = path
        .trim_start_matches("/o/")
        .trim_end_matches('/')
        .to_string();
    assert!(!slug.is_empty(), "setup lands on the overview, got {path}");
    Session { client, slug }
}

pub async fn login(server: &TestServer, email: &str, password: &str) -> Client {
    let client = browser();
    let token = csrf(&client, &server.url("/login")).await;
    let r = client
        .post(server.url("/login"))
        .form(&[
            ("csrf", token.as_str()),
            ("email", email),
            ("password", password),
            ("next", "/"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK, "login as {email}");
    client
}

/// A page's status and HTML, as `client` (a signed-in browser) gets it.
pub async fn get_page(client: &Client, url: &str) -> (StatusCode, String) {
    let r = client.get(url).send().await.unwrap();
    let status = r.status();
    (status, r.text().await.unwrap())
}

/// The CSRF token from any page with a form.
pub async fn csrf(client: &Client, url: &str) -> String {
    let html = client.get(url).send().await.unwrap().text().await.unwrap();
    extract(&html, "name=\"csrf\" value=\"", "\"").expect("csrf token on page")
}

pub fn extract(html: &str, before: &str, after: &str) -> Option<String> {
    let start = html.find(before)? + before.len();
    let end = html[start..].find(after)? + start;
    Some(html[start..end].to_string())
}

/// Creates an API key through the API keys page and returns it.
pub async fn api_key(server: &impl Served, s: &Session, scopes: &[&str]) -> String {
    let page = server.url(&format!("/o/{}/api-keys", s.slug));
    let token = csrf(&s.client, &page).await;
    let mut form = vec![("csrf", token.as_str()), ("name", "test key")];
    for scope in scopes {
        form.push(("scopes", scope));
    }
    let r = s.client.post(&page).form(&form).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let html = r.text().await.unwrap();
    extract(&html, "data-testid=\"new-key\">", "<").expect("new key shown")
}

/// Creates a second org through the new-organisation form (the setup user is server admin).
pub async fn create_org(server: &impl Served, s: &Session, name: &str, slug: &str) -> Session {
    let token = csrf(&s.client, &server.url("/orgs/new")).await;
    let r = s
        .client
        .post(server.url("/orgs"))
        .form(&[
            ("csrf", token.as_str()),
            ("name", name),
            ("slug", slug),
            ("time_zone", "UTC"),
            ("currency", "USD"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    Session {
        client: s.client.clone(),
        slug: slug.to_string(),
    }
}

/// Invites `email` with `role` through the members page; returns the link shown once.
pub async fn invite(server: &TestServer, s: &Session, email: &str, role: &str) -> String {
    let page = server.url(&format!("/o/{}/members", s.slug));
    let token = csrf(&s.client, &page).await;
    let r = s
        .client
        .post(&page)
        .form(&[("csrf", token.as_str()), ("email", email), ("role", role)])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK, "invite {email}");
    let html = r.text().await.unwrap();
    extract(&html, "data-testid=\"invite-link\">", "<").expect("invitation link shown")
}

/// Adds a member who has no account yet: an invitation, accepted by creating the account
/// (name "Member", password [`PASSWORD`]) through the link in a fresh browser.
pub async fn add_member(server: &TestServer, s: &Session, email: &str, role: &str) {
    let link = invite(server, s, email, role).await;
    let invitee = browser();
    let token = csrf(&invitee, &link).await;
    let r = invitee
        .post(&link)
        .form(&[
            ("csrf", token.as_str()),
            ("name", "Member"),
            ("password", PASSWORD),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK, "{email} accepts");
    assert_eq!(
        r.url().path(),
        format!("/o/{}/", s.slug),
        "{email} lands in the org"
    );
}

/// A JSON API call (`path` under `/api/v1`) with an API key; the body as JSON (Null if none).
pub async fn send_json(
    server: &impl Served,
    key: &str,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let mut req = reqwest::Client::new()
        .request(method, server.url(&format!("/api/v1{path}")))
        .bearer_auth(key);
    if let Some(b) = body {
        req = req.json(&b);
    }
    let r = req.send().await.unwrap();
    let status = r.status();
    let text = r.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

pub async fn post_api(
    server: &impl Served,
    key: &str,
    path: &str,
    body: Value,
) -> (StatusCode, Value) {
    send_json(server, key, reqwest::Method::POST, path, Some(body)).await
}

pub async fn post_points(server: &impl Served, key: &str, body: &Value) -> (StatusCode, Value) {
    let r = Client::new()
        .post(server.url("/api/v1/metrics"))
        .bearer_auth(key)
        .json(body)
        .send()
        .await
        .unwrap();
    let status = r.status();
    (status, r.json().await.unwrap_or(Value::Null))
}

pub async fn get_json(server: &impl Served, key: &str, path: &str) -> (StatusCode, Value) {
    let r = Client::new()
        .get(server.url(path))
        .bearer_auth(key)
        .send()
        .await
        .unwrap();
    let status = r.status();
    (status, r.json().await.unwrap_or(Value::Null))
}

/// The first firing alert, once there is one.
pub async fn first_firing_alert(server: &TestServer, key: &str) -> Value {
    wait_until("a firing alert", || async {
        let (_, alerts) = get_json(server, key, "/api/v1/alerts?state=firing").await;
        alerts["alerts"].as_array().and_then(|a| a.first()).cloned()
    })
    .await
}

/// Values of the first series of a series response, null buckets as None.
pub fn values(body: &Value) -> Vec<Option<f64>> {
    body["series"][0]["points"]
        .as_array()
        .expect("points")
        .iter()
        .map(|p| p["value"].as_f64())
        .collect()
}

/// `vitals serve` as a child process of the test, to be killed with SIGKILL (`kill_on_drop`).
pub struct ServeChild {
    base: String,
    child: tokio::process::Child,
}

impl Served for ServeChild {
    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }
}

impl ServeChild {
    /// Starts `vitals serve` on `dir` with the test settings and `env` (config keys, or
    /// `FAILPOINTS` to arm a failpoint).
    pub async fn start(dir: &std::path::Path, env: &[(&str, &str)]) -> ServeChild {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_vitals"))
            .args([
                "serve",
                "--listen",
                &format!("127.0.0.1:{port}"),
                "--data-dir",
            ])
            .arg(dir)
            .env("RUST_LOG", "warn")
            .env("VITALS_STORAGE__DUCKDB_MEMORY_LIMIT", "256MB")
            .env("VITALS_STORAGE__DUCKDB_THREADS", "1")
            .env("VITALS_RATE_LIMITS__API_PER_MINUTE", "0")
            .env("VITALS_RATE_LIMITS__INGEST_PER_MINUTE", "0")
            .envs(env.iter().copied())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("start vitals serve");
        let base = format!("http://127.0.0.1:{port}");
        let health = format!("{base}/healthz");
        for _ in 0..600 {
            if let Ok(Some(status)) = child.try_wait() {
                let mut err = String::new();
                if let Some(mut stderr) = child.stderr.take() {
                    let _ = tokio::io::AsyncReadExt::read_to_string(&mut stderr, &mut err).await;
                }
                panic!("vitals serve exited ({status}): {err}");
            }
            if let Ok(r) = reqwest::get(&health).await
                && r.status().is_success()
            {
                return ServeChild { base, child };
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("vitals serve did not answer in 60 s");
    }

    /// Waits for the armed failpoint to be reached, then kills the process with SIGKILL.
    pub async fn kill_at_failpoint(mut self, failpoint: &str) {
        use tokio::io::AsyncBufReadExt;
        let stderr = self.child.stderr.take().expect("piped stderr");
        let mut lines = tokio::io::BufReader::new(stderr).lines();
        let wanted = format!("failpoint {failpoint} reached");
        let seen = tokio::time::timeout(Duration::from_secs(60), async {
            while let Ok(Some(line)) = lines.next_line().await {
                if line.contains(&wanted) {
                    return true;
                }
            }
            false
        })
        .await;
        assert_eq!(seen, Ok(true), "{wanted}");
        self.kill().await;
    }

    /// SIGKILL, then waits for the process to be gone (its DuckDB lock with it).
    pub async fn kill(mut self) {
        self.child.start_kill().expect("SIGKILL");
        self.child.wait().await.expect("reaped");
    }
}
