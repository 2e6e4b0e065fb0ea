//! A static file server on the HTTP stack tessera serves with (hyper, through
//! axum, on tokio): the reference of `bench/lfs`. `GET /<name>` streams a
//! file of the directory, `PUT /<name>` streams the request body into one.
//! Names are plain file names; nothing else is served.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use axum::body::Body;
use axum::extract::{Path, Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use futures::StreamExt;
use tokio::io::AsyncWriteExt;

fn plain(name: &str) -> bool {
    !name.is_empty()
        && name != "."
        && name != ".."
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
}

async fn fetch(State(dir): State<Arc<PathBuf>>, Path(name): Path<String>) -> Response {
    if !plain(&name) {
        return StatusCode::NOT_FOUND.into_response();
    }
    match tokio::fs::File::open(dir.join(&name)).await {
        Ok(file) => Body::from_stream(tokio_util::io::ReaderStream::with_capacity(file, 64 << 10)).into_response(),
        Err(_) => StatusCode::NOT_FOUND.into_response(),
    }
}

async fn store(State(dir): State<Arc<PathBuf>>, Path(name): Path<String>, request: Request) -> StatusCode {
    if !plain(&name) {
        return StatusCode::NOT_FOUND;
    }
    let Ok(mut file) = tokio::fs::File::create(dir.join(&name)).await else { return StatusCode::INTERNAL_SERVER_ERROR };
    let mut body = request.into_body().into_data_stream();
    while let Some(chunk) = body.next().await {
        let Ok(chunk) = chunk else { return StatusCode::BAD_REQUEST };
        if file.write_all(&chunk).await.is_err() {
            return StatusCode::INTERNAL_SERVER_ERROR;
        }
    }
    if file.sync_all().await.is_err() {
        return StatusCode::INTERNAL_SERVER_ERROR;
    }
    StatusCode::OK
}

pub fn run(dir: PathBuf, addr: &str) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(addr).await.with_context(|| format!("binding {addr}"))?;
        println!("listening on http://{}", listener.local_addr()?);
        let app = axum::Router::new().route("/{name}", get(fetch).put(store)).with_state(Arc::new(dir));
        axum::serve(listener, app).await?;
        Ok(())
    })
}
