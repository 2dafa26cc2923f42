//! What a browser loads: the room page at `/`, the status page at `/status`, the panel
//! client library at `/avgate.js`, and the site's panels at `/panel/NAME`.
//!
//! The room page and TOML panel pages are the same code on top of `avgate.js`: `panel.js`
//! (the frame: top bar, pages, overlay, sign-in), `panel-widgets.js` (the widgets) and
//! `panel-dom.js` (helpers). The room page derives its widgets from `/api/devices`
//! (`room.js`); a panel page gets them from its checked page file, embedded as JSON.

use std::path::{Component, Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{Path as UrlPath, State};
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::get;

use crate::config::{Panel, PanelContent, PanelPage};
use crate::reload::Swap;

const ROOM_HTML: &str = include_str!("room.html");
const STATUS_HTML: &str = include_str!("status.html");
const AVGATE_JS: &str = include_str!("avgate.js");
const PANEL_JS: &str = include_str!("panel.js");
const PANEL_DOM_JS: &str = include_str!("panel-dom.js");
const PANEL_WIDGETS_JS: &str = include_str!("panel-widgets.js");
const ROOM_JS: &str = include_str!("room.js");
const PANEL_CSS: &str = include_str!("panel.css");
/// The demo's panel page, also a starting point for a site's own.
pub const DEMO_PANEL_TOML: &str = include_str!("demo-panel.toml");

/// The line in avgate.js the gateway rewrites with its own ping interval.
const PING_LINE: &str = "const GATEWAY_PING_MS = 15000;";

#[derive(Clone)]
struct Pages {
    /// The site's panel pages; a reload replaces them.
    panels: Arc<Swap<Vec<Panel>>>,
    /// avgate.js with this gateway's ping interval written in.
    avgate_js: Arc<str>,
}

/// The browser-facing routes; merge into the gateway's router.
pub fn router(panels: Arc<Swap<Vec<Panel>>>, ping_interval: Duration) -> Router {
    let avgate_js = AVGATE_JS.replacen(
        PING_LINE,
        &format!("const GATEWAY_PING_MS = {};", ping_interval.as_millis()),
        1,
    );
    let pages = Pages {
        panels,
        avgate_js: avgate_js.into(),
    };
    Router::new()
        .route("/", get(|| async { Html(ROOM_HTML) }))
        .route("/status", get(|| async { Html(STATUS_HTML) }))
        .route("/avgate.js", get(avgate_js_file))
        .route("/panel.js", get(|| async { script(PANEL_JS) }))
        .route("/panel-dom.js", get(|| async { script(PANEL_DOM_JS) }))
        .route(
            "/panel-widgets.js",
            get(|| async { script(PANEL_WIDGETS_JS) }),
        )
        .route("/room.js", get(|| async { script(ROOM_JS) }))
        .route(
            "/panel.css",
            get(|| async { asset("text/css; charset=utf-8", PANEL_CSS) }),
        )
        .route("/panel/{name}", get(panel_page))
        .route("/panel/{name}/", get(panel_dir_index))
        .route("/panel/{name}/{*file}", get(panel_dir_file))
        .with_state(pages)
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    // Revalidated on every load: a gateway upgrade must never leave a panel on old code.
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response()
}

fn script(body: &'static str) -> Response {
    asset("text/javascript; charset=utf-8", body)
}

async fn avgate_js_file(State(pages): State<Pages>) -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        pages.avgate_js.to_string(),
    )
        .into_response()
}

fn not_found(what: String) -> Response {
    (StatusCode::NOT_FOUND, what).into_response()
}

fn find(pages: &Pages, name: &str) -> Option<Panel> {
    pages.panels.load().iter().find(|p| p.name == name).cloned()
}

async fn panel_page(State(pages): State<Pages>, UrlPath(name): UrlPath<String>) -> Response {
    match find(&pages, &name).map(|p| p.content) {
        Some(PanelContent::Page(page)) => Html(page_html(&page)).into_response(),
        Some(PanelContent::Dir(_)) => {
            Redirect::permanent(&format!("/panel/{name}/")).into_response()
        }
        None => not_found(no_such_panel(&pages, &name)),
    }
}

fn no_such_panel(pages: &Pages, name: &str) -> String {
    let panels = pages.panels.load();
    let names: Vec<&str> = panels.iter().map(|p| p.name.as_str()).collect();
    format!(
        "no panel `{name}` in this site; it has: {} (add [panels.{name}] to the site file)",
        if names.is_empty() {
            "none".to_string()
        } else {
            names.join(", ")
        }
    )
}

/// A page file's HTML: the shared shell with the checked page embedded as JSON.
fn page_html(page: &PanelPage) -> String {
    let json = serde_json::to_string(page).unwrap_or_else(|_| "null".into());
    // Inside <script>, only `</` can end the element early.
    let json = json.replace("</", "<\\/");
    format!(
        r#"<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1, viewport-fit=cover">
<title>{title}</title>
<link rel="stylesheet" href="/panel.css">
</head>
<body>
<script type="application/json" id="panel-page">{json}</script>
<script type="module">
import {{ start }} from "/panel.js";
start(JSON.parse(document.getElementById("panel-page").textContent));
</script>
</body>
</html>
"#,
        title = html_escape(&page.title)
    )
}

fn html_escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

async fn panel_dir_index(State(pages): State<Pages>, UrlPath(name): UrlPath<String>) -> Response {
    serve_dir_file(&pages, &name, "index.html").await
}

async fn panel_dir_file(
    State(pages): State<Pages>,
    UrlPath((name, file)): UrlPath<(String, String)>,
) -> Response {
    serve_dir_file(&pages, &name, &file).await
}

async fn serve_dir_file(pages: &Pages, name: &str, file: &str) -> Response {
    let dir = match find(pages, name).map(|p| p.content) {
        Some(PanelContent::Dir(dir)) => dir,
        Some(PanelContent::Page(_)) => {
            return not_found(format!(
                "panel `{name}` is a page file, served at /panel/{name}"
            ));
        }
        None => return not_found(no_such_panel(pages, name)),
    };
    let Some(path) = inside(&dir, file) else {
        return (
            StatusCode::BAD_REQUEST,
            "only plain paths inside the panel directory",
        )
            .into_response();
    };
    let reading = path.clone();
    match tokio::task::spawn_blocking(move || std::fs::read(reading)).await {
        Ok(Ok(bytes)) => (
            [
                (header::CONTENT_TYPE, content_type(&path)),
                (header::CACHE_CONTROL, "no-cache"),
            ],
            bytes,
        )
            .into_response(),
        _ => not_found(format!("no file {file} in panel `{name}`")),
    }
}

/// `file` under `dir`, refusing `..`, absolute paths and anything else that could leave it.
fn inside(dir: &Path, file: &str) -> Option<PathBuf> {
    let relative = Path::new(file);
    if relative
        .components()
        .all(|c| matches!(c, Component::Normal(_)))
    {
        Some(dir.join(relative))
    } else {
        None
    }
}

fn content_type(path: &Path) -> &'static str {
    match path.extension().and_then(|e| e.to_str()) {
        Some("html" | "htm") => "text/html; charset=utf-8",
        Some("js" | "mjs") => "text/javascript; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("json") => "application/json",
        Some("svg") => "image/svg+xml",
        Some("png") => "image/png",
        Some("jpg" | "jpeg") => "image/jpeg",
        Some("webp") => "image/webp",
        Some("woff2") => "font/woff2",
        Some("ico") => "image/x-icon",
        _ => "application/octet-stream",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dir_files_stay_inside_their_directory() {
        let dir = Path::new("/srv/panel");
        assert_eq!(inside(dir, "css/a.css"), Some(dir.join("css/a.css")));
        assert_eq!(inside(dir, "../site.toml"), None);
        assert_eq!(inside(dir, "a/../../b"), None);
        assert_eq!(inside(dir, "/etc/passwd"), None);
    }

    #[test]
    fn the_ping_line_is_in_avgate_js() {
        // The gateway rewrites this line; if it changed, panels would assume 15 s.
        assert!(AVGATE_JS.contains(PING_LINE));
    }

    #[test]
    fn a_page_title_cannot_end_the_script_element() {
        let page = PanelPage {
            name: "x".into(),
            title: "</script><b>".into(),
            idle_timeout_ms: None,
            offline_message: String::new(),
            pages: vec![],
        };
        let html = page_html(&page);
        assert!(!html.contains("</script><b>"));
        assert!(html.contains("<title>&lt;/script&gt;&lt;b&gt;</title>"));
    }
}
