//! Static assets embedded in the binary (htmx, its SSE extension, uPlot, our CSS and JS), served
//! with the right content type, an ETag and caching headers. No CDN: works offline.

use axum::extract::Path;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use rust_embed::RustEmbed;

#[derive(RustEmbed)]
#[folder = "assets/"]
struct Assets;

const SERVED_EXTENSIONS: &[&str] = &["js", "css", "svg", "png", "ico", "woff2"];

pub async fn asset(Path(path): Path<String>, headers: HeaderMap) -> Response {
    let servable = path
        .rsplit_once('.')
        .is_some_and(|(_, ext)| SERVED_EXTENSIONS.contains(&ext));
    let Some(file) = servable.then(|| Assets::get(&path)).flatten() else {
        return (StatusCode::NOT_FOUND, "no such asset").into_response();
    };
    let etag = format!("\"{}\"", hex::encode(&file.metadata.sha256_hash()[..12]));
    if headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        == Some(etag.as_str())
    {
        return StatusCode::NOT_MODIFIED.into_response();
    }
    let mime = mime_guess::from_path(&path).first_or_octet_stream();
    let mut response = file.data.into_owned().into_response();
    let h = response.headers_mut();
    if let Ok(v) = HeaderValue::from_str(mime.as_ref()) {
        h.insert(header::CONTENT_TYPE, v);
    }
    if let Ok(v) = HeaderValue::from_str(&etag) {
        h.insert(header::ETAG, v);
    }
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=3600, must-revalidate"),
    );
    response
}

/// `GET /t.js`: the browser tracker (`assets/t.js`), loaded by other sites: any origin may
/// fetch it (it carries nothing secret).
pub async fn tracker(headers: HeaderMap) -> Response {
    let mut response = asset(Path("t.js".to_string()), headers).await;
    response.headers_mut().insert(
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        HeaderValue::from_static("*"),
    );
    response
}
