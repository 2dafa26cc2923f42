//! Browser test harness: Debian's headless Chromium driven over WebDriver (fantoccini),
//! with chromedriver started on a free loopback port and shared by the tests running at
//! the same time, plus a TCP proxy that can go silent without closing.
#![allow(dead_code)]

use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use avgate::Gateway;
use avgate::demo::DemoRoom;
use fantoccini::{Client, ClientBuilder};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// Browser steps wait at most this long: a cold Chromium on a loaded machine is slow.
pub const BROWSER_DEADLINE: Duration = Duration::from_secs(30);

const CHROMIUM_FLAGS: &[&str] = &[
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
];

/// A running chromedriver; killed when the last test using it lets go.
pub struct Driver {
    child: Mutex<Child>,
    pub url: String,
    chromium: PathBuf,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let child = self.child.get_mut().unwrap_or_else(|e| e.into_inner());
        let _ = child.kill();
        let _ = child.wait();
    }
}

fn find_program(names: &[&str]) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    for dir in std::env::split_paths(&path) {
        for name in names {
            let candidate = dir.join(name);
            if candidate.is_file() {
                return Some(candidate);
            }
        }
    }
    None
}

/// The shared chromedriver, or None (after printing a SKIP line) when this machine has no
/// browser. Under CI (`CI=true`) a missing browser is a failure, not a skip.
pub fn driver(test: &str) -> Option<Arc<Driver>> {
    static SHARED: Mutex<Weak<Driver>> = Mutex::new(Weak::new());
    let mut shared = SHARED.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(driver) = shared.upgrade() {
        return Some(driver);
    }
    let chromedriver = find_program(&["chromedriver"]);
    let chromium = find_program(&["chromium", "chromium-browser", "google-chrome"]);
    let (Some(chromedriver), Some(chromium)) = (chromedriver, chromium) else {
        let why =
            "no chromium and chromedriver on PATH (apt-get install -y chromium chromium-driver)";
        if std::env::var("CI").is_ok_and(|v| v == "true") {
            panic!("{test}: {why}; CI must run the browser tests");
        }
        // Straight to stderr, past the test harness's capture, so the skip is seen.
        let _ = writeln!(std::io::stderr(), "SKIP {test}: {why}");
        return None;
    };
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free loopback port")
        .port();
    let mut child = Command::new(&chromedriver)
        .arg(format!("--port={port}"))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("chromedriver starts");
    // It says when it listens; read that line rather than guessing a delay.
    let stdout = child.stdout.take().expect("piped stdout");
    let mut lines = std::io::BufRead::lines(std::io::BufReader::new(stdout));
    loop {
        match lines.next() {
            Some(Ok(line)) if line.contains("started successfully") => break,
            Some(Ok(_)) => continue,
            _ => {
                let _ = child.kill();
                panic!("chromedriver exited before it was ready");
            }
        }
    }
    // Keep draining its output so it never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    let driver = Arc::new(Driver {
        child: Mutex::new(child),
        url: format!("http://127.0.0.1:{port}"),
        chromium,
    });
    *shared = Arc::downgrade(&driver);
    Some(driver)
}

/// One browser session (its own Chromium and profile directory).
pub struct Browser {
    pub client: Client,
    _profile: tempfile::TempDir,
}

impl Browser {
    pub async fn open(driver: &Driver, width: u32, height: u32) -> Browser {
        let profile = tempfile::tempdir().expect("profile dir");
        let mut args: Vec<String> = CHROMIUM_FLAGS.iter().map(|s| s.to_string()).collect();
        args.push(format!("--user-data-dir={}", profile.path().display()));
        args.push(format!("--window-size={width},{height}"));
        let mut caps = serde_json::Map::new();
        caps.insert(
            "goog:chromeOptions".into(),
            json!({"binary": driver.chromium, "args": args}),
        );
        let client = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
            .capabilities(caps)
            .connect(&driver.url)
            .await
            .expect("a Chromium session starts");
        let browser = Browser {
            client,
            _profile: profile,
        };
        browser.viewport(width, height).await;
        browser
    }

    /// Makes the page's viewport (not the window) exactly `width`×`height`.
    pub async fn viewport(&self, width: u32, height: u32) {
        self.client
            .set_window_size(width, height)
            .await
            .expect("window resized");
        let inner = self
            .js("return [window.innerWidth, window.innerHeight]", vec![])
            .await;
        let (w, h) = (
            inner[0].as_u64().unwrap_or(0),
            inner[1].as_u64().unwrap_or(0),
        );
        if (w, h) != (u64::from(width), u64::from(height)) {
            let (dw, dh) = (i64::from(width) - w as i64, i64::from(height) - h as i64);
            self.client
                .set_window_size(
                    (i64::from(width) + dw) as u32,
                    (i64::from(height) + dh) as u32,
                )
                .await
                .expect("window resized");
        }
    }

    pub async fn goto(&self, url: &str) {
        self.client.goto(url).await.expect("page loads");
    }

    pub async fn js(&self, script: &str, args: Vec<Value>) -> Value {
        self.client
            .execute(script, args)
            .await
            .unwrap_or_else(|e| panic!("script failed: {e}\n{script}"))
    }

    pub async fn js_async(&self, script: &str, args: Vec<Value>) -> Value {
        self.client
            .execute_async(script, args)
            .await
            .unwrap_or_else(|e| panic!("script failed: {e}\n{script}"))
    }

    /// Waits until `expr` (a JS expression) is truthy in the page; returns its value.
    pub async fn until(&self, what: &str, expr: &str) -> Value {
        let started = Instant::now();
        let script = format!("try {{ return ({expr}) || null; }} catch (e) {{ return null; }}");
        loop {
            let value = self.js(&script, vec![]).await;
            if !value.is_null() && value != json!(false) {
                return value;
            }
            if started.elapsed() > BROWSER_DEADLINE {
                let body = self
                    .js(
                        "return document.body ? document.body.innerText.slice(0, 2000) : ''",
                        vec![],
                    )
                    .await;
                panic!("timed out waiting for {what} ({expr}); the page shows:\n{body}");
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// Loads a panel and waits until it is drawn and live.
    pub async fn open_panel(&self, url: &str) {
        self.goto(url).await;
        self.until(
            "the panel to be live",
            "document.body.dataset.ready === 'true' && window.avgatePanel && window.avgatePanel.status.state === 'live'",
        )
        .await;
    }

    pub async fn click(&self, css: &str) {
        let element = self
            .client
            .wait()
            .at_most(BROWSER_DEADLINE)
            .for_element(fantoccini::Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("no element {css}: {e}"));
        element
            .click()
            .await
            .unwrap_or_else(|e| panic!("cannot click {css}: {e}"));
    }

    pub async fn screenshot(&self, path: &Path) {
        let png = self.client.screenshot().await.expect("screenshot");
        std::fs::create_dir_all(path.parent().unwrap()).expect("screenshot dir");
        std::fs::write(path, png).expect("screenshot written");
    }

    pub async fn close(self) {
        let _ = self.client.close().await;
    }
}

/// Where screenshots go: target/browser-screenshots/.
pub fn screenshot_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("target/browser-screenshots")
}

/// A TCP proxy to `target` that can stop forwarding without closing anything: the
/// sockets stay open and silent, as on a Wi-Fi link that died.
pub struct SilentProxy {
    pub addr: SocketAddr,
    silent: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl SilentProxy {
    pub async fn start(target: SocketAddr) -> SilentProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("proxy binds");
        let addr = listener.local_addr().unwrap();
        let (silent, watch) = watch::channel(false);
        let task = tokio::spawn(async move {
            while let Ok((inbound, _)) = listener.accept().await {
                let watch = watch.clone();
                tokio::spawn(async move {
                    // A connection made while silent waits, unanswered, like the rest.
                    if wait_loud(&watch).await.is_none() {
                        return;
                    }
                    let Ok(outbound) = TcpStream::connect(target).await else {
                        return;
                    };
                    let _ = inbound.set_nodelay(true);
                    let _ = outbound.set_nodelay(true);
                    let (ri, wi) = inbound.into_split();
                    let (ro, wo) = outbound.into_split();
                    tokio::join!(pump(ri, wo, watch.clone()), pump(ro, wi, watch));
                });
            }
        });
        SilentProxy { addr, silent, task }
    }

    pub fn set_silent(&self, silent: bool) {
        self.silent.send_replace(silent);
    }
}

impl Drop for SilentProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn wait_loud(watch: &watch::Receiver<bool>) -> Option<()> {
    let mut watch = watch.clone();
    watch.wait_for(|silent| !*silent).await.ok().map(|_| ())
}

/// Copies one direction. Whatever is read while silent (data or the end of the stream) is
/// held until the link is loud again, so nothing is forwarded and nothing is closed.
async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    watch: watch::Receiver<bool>,
) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        if wait_loud(&watch).await.is_none() {
            return;
        }
        // An error ends the stream like a close does.
        let n: usize = from.read(&mut buf).await.unwrap_or_default();
        if wait_loud(&watch).await.is_none() {
            return;
        }
        if n == 0 {
            let _ = to.shutdown().await;
            return;
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}

/// The p-th percentile (0–100) of some milliseconds, nearest-rank.
pub fn percentile(samples: &[f64], p: f64) -> f64 {
    let mut sorted = samples.to_vec();
    sorted.sort_by(|a, b| a.total_cmp(b));
    let rank = ((p / 100.0) * sorted.len() as f64).ceil().max(1.0) as usize;
    sorted[rank.min(sorted.len()) - 1]
}

/// The demo room with a gateway on it (`ping`: the panels' ping interval, if not the
/// default), every device online, so a page starts from a settled room.
pub async fn demo_gateway(ping: Option<Duration>) -> (DemoRoom, Gateway) {
    let room = DemoRoom::start("127.0.0.1:0".parse().unwrap(), None)
        .await
        .expect("demo room starts");
    let mut site = room.site.clone();
    if let Some(ping) = ping {
        site.server.ping_interval = ping;
    }
    let gateway = Gateway::start(site).await.expect("gateway starts");
    let (mut panel, _) = crate::common::Panel::hello(&gateway, json!({"type": "hello"})).await;
    for device in &room.site.devices {
        panel.until_event(&device.id, "online", json!(true)).await;
    }
    panel.close().await;
    (room, gateway)
}

/// Stops what [`demo_gateway`] started.
pub async fn finish(room: DemoRoom, gateway: Gateway) {
    gateway.shutdown().await;
    room.shutdown().await;
}
