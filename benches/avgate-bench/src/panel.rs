//! One load-client panel, speaking either avgate's panel protocol or socket.io v5 over
//! engine.io v4 (WebSocket transport only), with just enough parsing to follow the load
//! generator's values: every event carries the generator's counter, so a gap, a duplicate
//! or a reordering shows in the values alone.

use std::collections::VecDeque;
use std::net::SocketAddr;

use anyhow::{Context, anyhow, bail};
use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::servers::Kind;

type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Where a panel was, for coming back: avgate's epoch and seq, or socket.io's private
/// session id and the offset of the last packet.
#[derive(Debug, Clone, Default)]
pub struct Resume {
    pub epoch: u64,
    pub seq: u64,
    pub pid: String,
    pub offset: String,
}

/// What a frame meant to the bench.
#[derive(Debug, PartialEq, Eq)]
pub enum Frame {
    /// A load generator value (the counter).
    Value(u64),
    /// The result of command `id`.
    Result { id: u64, answer: Answer },
    /// Anything else (welcome, accepted, other points, pings already answered).
    Other,
}

/// How a command ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    Ok,
    /// A newer command with the same target replaced it while it waited (conflation): by
    /// design, not a refusal.
    Superseded,
    /// Any other failure, by its code (`device_busy`, `rate_limited`, `timeout`).
    Refused(String),
}

pub struct Panel {
    pub kind: Kind,
    socket: Socket,
    pub resume: Resume,
    /// Frames read while joining that belong to the stream after it.
    early: VecDeque<String>,
}

impl Panel {
    /// Connects and joins: avgate `hello` until the snapshot (or `welcome` with
    /// `resumed: true`), socket.io until the namespace is joined and the snapshot event
    /// arrived (or the session was recovered). Returns whether it resumed.
    pub async fn join(
        kind: Kind,
        addr: SocketAddr,
        client: &str,
        resume: Option<&Resume>,
    ) -> anyhow::Result<(Panel, bool)> {
        let url = match kind {
            Kind::Avgate => format!("ws://{addr}/ws"),
            Kind::SocketIo => format!("ws://{addr}/socket.io/?EIO=4&transport=websocket"),
        };
        // tungstenite allocates a 128 KiB read buffer per socket by default: 640 MB for
        // 5,000 panels. Panels get small frames.
        let config = WebSocketConfig::default().read_buffer_size(8 * 1024);
        let (socket, _) = tokio_tungstenite::connect_async_with_config(&url, Some(config), true)
            .await
            .with_context(|| format!("cannot connect to {url}"))?;
        let mut panel = Panel {
            kind,
            socket,
            resume: resume.cloned().unwrap_or_default(),
            early: VecDeque::new(),
        };
        let resumed = match kind {
            Kind::Avgate => panel.hello(client, resume).await?,
            Kind::SocketIo => panel.connect_namespace(resume).await?,
        };
        Ok((panel, resumed))
    }

    async fn hello(&mut self, client: &str, resume: Option<&Resume>) -> anyhow::Result<bool> {
        let resume = resume.map_or(String::new(), |r| {
            format!(r#","resume":{{"epoch":{},"seq":{}}}"#, r.epoch, r.seq)
        });
        let hello = format!(r#"{{"type":"hello","client":"{client}"{resume}}}"#);
        self.socket.send(Message::text(hello)).await?;
        let welcome = self.next_text().await?;
        if !welcome.starts_with(r#"{"type":"welcome""#) {
            bail!("expected welcome, got {welcome}");
        }
        self.resume.epoch = number_after(&welcome, r#""epoch":"#).context("welcome epoch")?;
        self.resume.seq = number_after(&welcome, r#""seq":"#).context("welcome seq")?;
        if welcome.contains(r#""resumed":true"#) {
            return Ok(true);
        }
        let snapshot = self.next_text().await?;
        if !snapshot.starts_with(r#"{"type":"snapshot""#) {
            bail!("expected a snapshot, got {snapshot}");
        }
        Ok(false)
    }

    async fn connect_namespace(&mut self, resume: Option<&Resume>) -> anyhow::Result<bool> {
        let open = self.next_text().await?;
        if !open.starts_with("0{") {
            bail!("expected an engine.io open packet, got {open}");
        }
        let connect = match resume {
            Some(r) if !r.pid.is_empty() => {
                format!(r#"40{{"pid":"{}","offset":"{}"}}"#, r.pid, r.offset)
            }
            _ => "40".to_string(),
        };
        self.socket.send(Message::text(connect)).await?;
        // A recovered session's missed packets come before the CONNECT packet (socket.io
        // writes them while it restores the socket): keep them for `next`.
        let joined = loop {
            let text = self.read_text().await?;
            if text.starts_with("40") {
                break text;
            }
            self.early.push_back(text);
        };
        let pid = string_after(&joined, r#""pid":""#)
            .context("no pid: is connection state recovery on?")?;
        let recovered = resume.is_some_and(|r| r.pid == pid);
        self.resume.pid = pid.to_string();
        if !recovered {
            let snapshot = self.next_text().await?;
            if !snapshot.starts_with(r#"42["snapshot""#) {
                bail!("expected the snapshot event, got {snapshot}");
            }
        }
        Ok(recovered)
    }

    /// The next text frame: one kept while joining, else from the socket.
    async fn next_text(&mut self) -> anyhow::Result<String> {
        match self.early.pop_front() {
            Some(text) => Ok(text),
            None => self.read_text().await,
        }
    }

    /// The next text frame from the socket, answering engine.io pings on the way.
    async fn read_text(&mut self) -> anyhow::Result<String> {
        loop {
            let message = self
                .socket
                .next()
                .await
                .ok_or_else(|| anyhow!("the server closed the connection"))??;
            match message {
                Message::Text(text) => {
                    if self.kind == Kind::SocketIo && text.as_str() == "2" {
                        self.socket.send(Message::text("3")).await?;
                        continue;
                    }
                    return Ok(text.as_str().to_string());
                }
                Message::Close(_) => bail!("the server closed the connection"),
                _ => {}
            }
        }
    }

    /// Reads the next frame and says what it meant; keeps the resume point current.
    pub async fn next(&mut self) -> anyhow::Result<Frame> {
        let text = self.next_text().await?;
        Ok(self.understand(&text))
    }

    fn understand(&mut self, text: &str) -> Frame {
        match self.kind {
            Kind::Avgate => {
                if text.starts_with(r#"{"type":"event""#) {
                    if let Some(seq) = number_after(text, r#""seq":"#) {
                        self.resume.seq = seq;
                    }
                    return load_value(text).map_or(Frame::Other, Frame::Value);
                }
                if text.starts_with(r#"{"type":"result""#) {
                    let id = number_after(text, r#""id":"#).unwrap_or(u64::MAX);
                    let answer = if text.contains(r#""ok":true"#) {
                        Answer::Ok
                    } else if text.contains(r#""code":"superseded""#) {
                        Answer::Superseded
                    } else {
                        Answer::Refused(string_after(text, r#""code":""#).unwrap_or("?").into())
                    };
                    return Frame::Result { id, answer };
                }
                if text.starts_with(r#"{"type":"snapshot""#)
                    && let Some(seq) = number_after(text, r#""seq":"#)
                {
                    self.resume.seq = seq;
                }
                Frame::Other
            }
            Kind::SocketIo => {
                if let Some(event) = text.strip_prefix(r#"42["event","#) {
                    // The offset connection state recovery appends: `...,"<offset>"]`.
                    if let Some(offset) = event
                        .strip_suffix("\"]")
                        .and_then(|rest| rest.rsplit_once(",\""))
                    {
                        self.resume.offset = offset.1.to_string();
                    }
                    return load_value(event).map_or(Frame::Other, Frame::Value);
                }
                if let Some(ack) = text.strip_prefix("43") {
                    let digits = ack.bytes().take_while(u8::is_ascii_digit).count();
                    let id = ack[..digits].parse().unwrap_or(u64::MAX);
                    let answer = if ack.contains(r#""ok":true"#) {
                        Answer::Ok
                    } else {
                        Answer::Refused(string_after(ack, r#""code":""#).unwrap_or("?").into())
                    };
                    return Frame::Result { id, answer };
                }
                Frame::Other
            }
        }
    }

    /// Sends a `set` of load generator point 0 to `value` with command id `id`; the
    /// answer comes as a [`Frame::Result`].
    pub async fn send_set(&mut self, id: u64, value: u64) -> anyhow::Result<()> {
        let text = match self.kind {
            Kind::Avgate => format!(
                r#"{{"type":"command","id":{id},"device":"load","command":"set","args":{{"point":0,"value":{value}}}}}"#
            ),
            Kind::SocketIo => format!(r#"42{id}["command",{{"point":0,"value":{value}}}]"#),
        };
        self.socket.send(Message::text(text)).await?;
        Ok(())
    }

    /// Sends a command and waits for its answer; returns whether it succeeded.
    pub async fn command(&mut self, id: u64, value: u64) -> anyhow::Result<Answer> {
        self.send_set(id, value).await?;
        loop {
            if let Frame::Result {
                id: answered,
                answer,
            } = self.next().await?
                && answered == id
            {
                return Ok(answer);
            }
        }
    }

    /// Closes the socket properly (a panel leaving on purpose).
    pub async fn close(mut self) {
        let _ = self.socket.close(None).await;
    }

    /// Drops the TCP connection with no goodbye, as a panel losing Wi-Fi: the server must
    /// keep what the panel needs to resume.
    pub fn drop_connection(self) -> Resume {
        self.resume
    }
}

/// The load generator's counter in an event for one of its `value.N` points.
fn load_value(text: &str) -> Option<u64> {
    let at = text.find(r#""point":"value."#)?;
    number_after(&text[at..], r#""value":"#)
}

fn number_after(text: &str, key: &str) -> Option<u64> {
    let start = text.find(key)? + key.len();
    let digits = text[start..].bytes().take_while(u8::is_ascii_digit).count();
    text[start..start + digits].parse().ok()
}

fn string_after<'a>(text: &'a str, key: &str) -> Option<&'a str> {
    let start = text.find(key)? + key.len();
    let len = text[start..].find('"')?;
    Some(&text[start..start + len])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_come_from_load_points_only() {
        let avgate =
            r#"{"type":"event","seq":12,"ts":"x","device":"load","point":"value.3","value":7}"#;
        assert_eq!(load_value(avgate), Some(7));
        let rate = r#"{"type":"event","seq":13,"ts":"x","device":"load","point":"rate","value":9}"#;
        assert_eq!(load_value(rate), None);
        let sio = r#"{"device":"load","point":"value.0","value":41},"abc-1"]"#;
        assert_eq!(load_value(sio), Some(41));
    }

    #[test]
    fn keys_are_read_from_the_text() {
        let joined = r#"40{"sid":"s1","pid":"p-9"}"#;
        assert_eq!(string_after(joined, r#""pid":""#), Some("p-9"));
        assert_eq!(number_after(r#"{"seq":42,"x":1}"#, r#""seq":"#), Some(42));
        assert_eq!(number_after(r#"{"seq":"a"}"#, r#""seq":"#), None);
    }
}
