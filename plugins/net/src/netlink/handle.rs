//! The netlink socket bound to one namespace, and the request/ack and dump exchanges.
//!
//! Synchronous on purpose (netavark moved its plugins from async rtnetlink to this and got
//! faster start-up and a smaller binary): a CNI plugin issues a few dozen requests in a row
//! and exits. Every mutation asks for an ACK so a refusal surfaces as the errno of that very
//! request. Dumps are read to `NLMSG_DONE`; if any part carries `NLM_F_DUMP_INTR` (the table
//! changed while the kernel was walking it) the whole dump is discarded and repeated, as CNI
//! `pkg/netlinksafe` does. Replies with another sequence number (late answers, multicast) are
//! skipped rather than misread as ours.

use super::error::{NetlinkError, Result};
use super::ns::Netns;
use netlink_packet_core::{
    NLM_F_ACK, NLM_F_DUMP, NLM_F_DUMP_INTR, NLM_F_REQUEST, NetlinkHeader, NetlinkMessage,
    NetlinkPayload,
};
use netlink_packet_route::RouteNetlinkMessage;
use netlink_sys::{Socket, SocketAddr, protocols::NETLINK_ROUTE};

/// How often an interrupted dump is repeated before giving up.
const DUMP_ATTEMPTS: u32 = 10;
/// Receive buffer; the kernel never sends datagrams larger than 32 KiB for rtnetlink dumps.
const RECV_BUF: usize = 64 * 1024;

/// A route-netlink socket bound to one network namespace.
///
/// Created inside the target namespace once ([`Handle::in_netns`]) and then used from the
/// caller's thread; the namespace of the calling thread does not matter afterwards.
pub struct Handle {
    socket: Socket,
    seq: u32,
    buf: Vec<u8>,
}

impl std::fmt::Debug for Handle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Handle").field("seq", &self.seq).finish()
    }
}

fn open_socket() -> Result<Socket> {
    let what = "open netlink socket";
    let mut socket = Socket::new(NETLINK_ROUTE).map_err(|e| NetlinkError::io(what, &e))?;
    socket.bind_auto().map_err(|e| NetlinkError::io(what, &e))?;
    socket
        .connect(&SocketAddr::new(0, 0))
        .map_err(|e| NetlinkError::io(what, &e))?;
    Ok(socket)
}

impl Handle {
    /// A socket in the namespace of the calling thread.
    pub fn current() -> Result<Handle> {
        Ok(Self::from_socket(open_socket()?))
    }

    /// A socket in namespace `ns`, created on a short-lived thread that entered it.
    pub fn in_netns(ns: &Netns) -> Result<Handle> {
        let socket = ns.run(open_socket)??;
        Ok(Self::from_socket(socket))
    }

    fn from_socket(socket: Socket) -> Handle {
        Handle {
            socket,
            seq: 0,
            buf: vec![0; RECV_BUF],
        }
    }

    fn send(&mut self, msg: RouteNetlinkMessage, flags: u16, what: &str) -> Result<u32> {
        self.seq = self.seq.wrapping_add(1);
        let mut header = NetlinkHeader::default();
        header.flags = NLM_F_REQUEST | flags;
        header.sequence_number = self.seq;
        let mut packet = NetlinkMessage::new(header, NetlinkPayload::InnerMessage(msg));
        packet.finalize();
        let mut bytes = vec![0u8; packet.buffer_len()];
        packet.serialize(&mut bytes);
        self.socket
            .send(&bytes, 0)
            .map_err(|e| NetlinkError::io(what, &e))?;
        Ok(self.seq)
    }

    /// Sends a request with `NLM_F_ACK` and returns the messages that came before the ACK
    /// (e.g. the answer to a GET). A NACK becomes [`NetlinkError::Os`] naming `what`.
    pub(crate) fn request(
        &mut self,
        msg: RouteNetlinkMessage,
        flags: u16,
        what: &str,
    ) -> Result<Vec<RouteNetlinkMessage>> {
        let seq = self.send(msg, flags | NLM_F_ACK, what)?;
        let mut out = Vec::new();
        self.receive(seq, what, &mut out, false).map(|_| out)
    }

    /// Dumps a table, repeating the dump when the kernel flags it as interrupted.
    pub(crate) fn dump(
        &mut self,
        msg: RouteNetlinkMessage,
        what: &str,
    ) -> Result<Vec<RouteNetlinkMessage>> {
        for _ in 0..DUMP_ATTEMPTS {
            let seq = self.send(msg.clone(), NLM_F_DUMP, what)?;
            let mut out = Vec::new();
            let interrupted = self.receive(seq, what, &mut out, true)?;
            if !interrupted {
                return Ok(out);
            }
        }
        Err(NetlinkError::DumpInterrupted {
            what: what.to_owned(),
            attempts: DUMP_ATTEMPTS,
        })
    }

    /// Reads replies to `seq` until the ACK/NACK (requests) or `NLMSG_DONE` (dumps). Returns
    /// whether any part carried `NLM_F_DUMP_INTR`. A message we cannot decode does not stop
    /// the read (the socket must be drained to stay in step); its error is returned at the end.
    fn receive(
        &mut self,
        seq: u32,
        what: &str,
        out: &mut Vec<RouteNetlinkMessage>,
        dump: bool,
    ) -> Result<bool> {
        let mut interrupted = false;
        let mut decode_error: Option<NetlinkError> = None;
        loop {
            let n = {
                let mut slice = &mut self.buf[..];
                self.socket
                    .recv(&mut slice, libc::MSG_TRUNC)
                    .map_err(|e| NetlinkError::io(what, &e))?
            };
            if n > self.buf.len() {
                return Err(NetlinkError::protocol(
                    what,
                    format!("reply of {n} bytes exceeds the receive buffer"),
                ));
            }
            let mut off = 0;
            while off + 16 <= n {
                let raw = &self.buf[off..n];
                let len = u32::from_ne_bytes([raw[0], raw[1], raw[2], raw[3]]) as usize;
                if len < 16 || len > raw.len() {
                    return Err(NetlinkError::protocol(
                        what,
                        format!("malformed netlink header (length {len})"),
                    ));
                }
                off += (len + 3) & !3;
                let msg_seq = u32::from_ne_bytes([raw[8], raw[9], raw[10], raw[11]]);
                if msg_seq != seq {
                    continue;
                }
                let packet = match NetlinkMessage::<RouteNetlinkMessage>::deserialize(&raw[..len]) {
                    Ok(p) => p,
                    Err(e) => {
                        decode_error.get_or_insert_with(|| NetlinkError::protocol(what, e));
                        continue;
                    }
                };
                if packet.header.flags & NLM_F_DUMP_INTR != 0 {
                    interrupted = true;
                }
                match packet.payload {
                    NetlinkPayload::InnerMessage(m) => out.push(m),
                    NetlinkPayload::Error(e) => {
                        if let Some(code) = e.code {
                            return Err(NetlinkError::os(what, code.get()));
                        }
                        // ACK: the request is complete.
                        return match decode_error {
                            Some(e) => Err(e),
                            None => Ok(interrupted),
                        };
                    }
                    NetlinkPayload::Done(d) => {
                        if d.code != 0 {
                            return Err(NetlinkError::os(what, d.code));
                        }
                        if dump {
                            return match decode_error {
                                Some(e) => Err(e),
                                None => Ok(interrupted),
                            };
                        }
                    }
                    NetlinkPayload::Overrun(_) => {
                        return Err(NetlinkError::protocol(what, "netlink overrun"));
                    }
                    _ => {}
                }
            }
        }
    }
}
