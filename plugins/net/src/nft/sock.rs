//! The `NETLINK_NETFILTER` socket and the netlink framing around nf_tables messages.
//!
//! A transaction is sent with one `sendto` (batch begin, the messages, batch end: the kernel
//! only treats them as one transaction when they arrive in one datagram). Netlink refuses a
//! datagram larger than the socket's send buffer, so [`NfSocket::reserve`] raises it to the
//! batch size with `SO_SNDBUFFORCE` (falling back to `SO_SNDBUF`), as nft's
//! `mnl_set_sndbuffer` does; a policy batch of 100,000 set elements is several megabytes.
//!
//! nfnetlink processes a batch synchronously inside that call and queues its replies before
//! returning, so they are drained without blocking, as `nft` does (`mnl_batch_talk`). Like
//! nft, we do not ask for an acknowledgement per message: the kernel reports every failed
//! message (with its sequence number) whether asked or not, so a successful batch produces
//! no per-message replies at all, only the acknowledgements of the batch begin and end
//! messages on kernels from 6.10. Per-message acknowledgements would queue one socket buffer
//! (about 1 KiB of receive budget) per message, and a batch of tens of thousands of messages
//! overflowed any reasonable receive buffer: the kernel then drops replies and the socket
//! reports `ENOBUFS`. Error replies are bounded by the receive buffer sized in `reserve`
//! (1 KiB per message, 4 to 64 MiB); if a batch with more failures than that still overflows
//! it, the first errors (the ones that matter) were queued first and are kept, and the loss
//! is reported. `NETLINK_CAP_ACK` keeps error replies small (no echo of our message).
//!
//! Dumps are read until `NLMSG_DONE` with a receive timeout, so a plugin never hangs on a
//! kernel that stops answering. The framing helpers are pure and unit-tested.

use super::NftError;
use netlink_sys::{Socket, SocketAddr, protocols::NETLINK_NETFILTER};
use std::os::fd::AsRawFd;

pub(crate) const NLMSG_ERROR: u16 = 2;
pub(crate) const NLMSG_DONE: u16 = 3;
pub(crate) const NLM_F_DUMP_INTR: u16 = 0x10;
const HDR_LEN: usize = 16;
const RECV_BUF: usize = 128 * 1024;
const RCVBUF_SIZE: usize = 4 * 1024 * 1024;
const RCVBUF_MAX: usize = 64 * 1024 * 1024;
/// Receive budget per batch message, for its possible error reply.
const RCVBUF_PER_MSG: usize = 1024;
const RECV_TIMEOUT_SECS: i64 = 30;

/// One netlink message inside a datagram.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Msg<'a> {
    pub ty: u16,
    pub flags: u16,
    pub seq: u32,
    /// The whole message, header included.
    pub bytes: &'a [u8],
}

impl<'a> Msg<'a> {
    pub fn payload(&self) -> &'a [u8] {
        &self.bytes[HDR_LEN..]
    }

    /// For `NLMSG_ERROR`: the errno (positive), or 0 for an acknowledgement.
    /// For `NLMSG_DONE`: a dump's final status.
    pub fn errno(&self) -> Option<i32> {
        let p = self.payload();
        (p.len() >= 4).then(|| -i32::from_ne_bytes([p[0], p[1], p[2], p[3]]))
    }

    /// The 16-bit ruleset generation id nf_tables puts into each reply (`nfgenmsg.res_id`).
    pub fn generation(&self) -> Option<u16> {
        let p = self.payload();
        (p.len() >= 4).then(|| u16::from_be_bytes([p[2], p[3]]))
    }
}

/// Splits a datagram into messages, checking every length.
pub(crate) fn split(buf: &[u8]) -> Result<Vec<Msg<'_>>, String> {
    let mut out = Vec::new();
    let mut rest = buf;
    while !rest.is_empty() {
        if rest.len() < HDR_LEN {
            return Err(format!("truncated netlink header ({} bytes)", rest.len()));
        }
        let len = u32::from_ne_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
        if len < HDR_LEN || len > rest.len() {
            return Err(format!(
                "bad netlink message length {len} ({} bytes left)",
                rest.len()
            ));
        }
        out.push(Msg {
            ty: u16::from_ne_bytes([rest[4], rest[5]]),
            flags: u16::from_ne_bytes([rest[6], rest[7]]),
            seq: u32::from_ne_bytes([rest[8], rest[9], rest[10], rest[11]]),
            bytes: &rest[..len],
        });
        let aligned = len.div_ceil(4) * 4;
        rest = rest.get(aligned..).unwrap_or(&[]);
    }
    Ok(out)
}

fn io_err(what: &str, e: &std::io::Error) -> NftError {
    NftError::Kernel {
        what: what.to_owned(),
        errno: e.raw_os_error().unwrap_or(libc::EIO),
    }
}

/// A netfilter netlink socket in the caller's network namespace.
pub(crate) struct NfSocket {
    sock: Socket,
}

impl NfSocket {
    pub fn open() -> Result<NfSocket, NftError> {
        let what = "open netfilter netlink socket";
        let mut sock = Socket::new(NETLINK_NETFILTER).map_err(|e| io_err(what, &e))?;
        sock.bind_auto().map_err(|e| io_err(what, &e))?;
        sock.set_cap_ack(true).map_err(|e| io_err(what, &e))?;
        // Best effort: a smaller buffer only matters for very large batches.
        if set_buf(&sock, libc::SO_RCVBUFFORCE, RCVBUF_SIZE).is_err() {
            let _ = sock.set_rx_buf_sz(RCVBUF_SIZE);
        }
        set_timeout(&sock, RECV_TIMEOUT_SECS).map_err(|e| io_err(what, &e))?;
        Ok(NfSocket { sock })
    }

    /// Makes room for a batch of `bytes` with `messages` messages: netlink refuses a
    /// datagram larger than the send buffer, and each error reply costs receive buffer space
    /// (about one small socket buffer each).
    pub fn reserve(&self, bytes: usize, messages: usize) {
        // Best effort: if this fails, the send reports EMSGSIZE, or the drain the loss.
        let snd = bytes + 64 * 1024;
        if set_buf(&self.sock, libc::SO_SNDBUFFORCE, snd).is_err() {
            let _ = set_buf(&self.sock, libc::SO_SNDBUF, snd);
        }
        let rcv = (messages * RCVBUF_PER_MSG).clamp(RCVBUF_SIZE, RCVBUF_MAX);
        if set_buf(&self.sock, libc::SO_RCVBUFFORCE, rcv).is_err() {
            let _ = set_buf(&self.sock, libc::SO_RCVBUF, rcv);
        }
    }

    pub fn send(&self, bytes: &[u8], what: &str) -> Result<(), NftError> {
        let kernel = SocketAddr::new(0, 0);
        let n = self
            .sock
            .send_to(bytes, &kernel, 0)
            .map_err(|e| io_err(what, &e))?;
        if n != bytes.len() {
            return Err(NftError::Protocol {
                what: what.to_owned(),
                reason: format!("sent {n} of {} bytes", bytes.len()),
            });
        }
        Ok(())
    }

    fn recv_flags(&self, flags: i32, what: &str) -> Result<Option<Vec<u8>>, NftError> {
        let mut buf: Vec<u8> = Vec::with_capacity(RECV_BUF);
        match self.sock.recv(&mut buf, flags | libc::MSG_TRUNC) {
            Ok(n) if n > RECV_BUF => Err(NftError::Protocol {
                what: what.to_owned(),
                reason: format!("reply of {n} bytes truncated"),
            }),
            Ok(_) => Ok(Some(buf)),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock && flags != 0 => Ok(None),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => Err(NftError::Protocol {
                what: what.to_owned(),
                reason: "timed out waiting for the kernel".to_owned(),
            }),
            Err(e) => Err(io_err(what, &e)),
        }
    }

    /// Every datagram already queued (the replies to a batch), and whether the kernel
    /// dropped some because the receive buffer was full (`ENOBUFS`, reported once, after
    /// which the queued replies are still read).
    pub fn drain(&self, what: &str) -> Result<(Vec<Vec<u8>>, bool), NftError> {
        let mut out = Vec::new();
        let mut lost = false;
        loop {
            match self.recv_flags(libc::MSG_DONTWAIT, what) {
                Ok(Some(d)) => out.push(d),
                Ok(None) => return Ok((out, lost)),
                Err(e) if e.errno() == Some(libc::ENOBUFS) && !lost => lost = true,
                Err(e) => return Err(e),
            }
        }
    }

    /// The next datagram, waiting for it.
    pub fn recv(&self, what: &str) -> Result<Vec<u8>, NftError> {
        self.recv_flags(0, what)?.ok_or_else(|| NftError::Protocol {
            what: what.to_owned(),
            reason: "no reply".to_owned(),
        })
    }
}

fn set_buf(sock: &Socket, opt: libc::c_int, size: usize) -> std::io::Result<()> {
    let v = libc::c_int::try_from(size).unwrap_or(libc::c_int::MAX);
    // SAFETY: setsockopt with a pointer to a live c_int of the right size.
    let rc = unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            libc::SOL_SOCKET,
            opt,
            (&v as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

fn set_timeout(sock: &Socket, secs: i64) -> std::io::Result<()> {
    let tv = libc::timeval {
        tv_sec: secs as libc::time_t,
        tv_usec: 0,
    };
    // SAFETY: setsockopt with a pointer to a live timeval of the right size.
    let rc = unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVTIMEO,
            (&tv as *const libc::timeval).cast(),
            std::mem::size_of::<libc::timeval>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(ty: u16, flags: u16, seq: u32, payload: &[u8]) -> Vec<u8> {
        let mut v = Vec::new();
        v.extend_from_slice(&((16 + payload.len()) as u32).to_ne_bytes());
        v.extend_from_slice(&ty.to_ne_bytes());
        v.extend_from_slice(&flags.to_ne_bytes());
        v.extend_from_slice(&seq.to_ne_bytes());
        v.extend_from_slice(&0u32.to_ne_bytes());
        v.extend_from_slice(payload);
        while v.len() % 4 != 0 {
            v.push(0);
        }
        v
    }

    #[test]
    fn splits_and_reads_errors() {
        let mut d = msg(NLMSG_ERROR, 0, 3, &(-2i32).to_ne_bytes());
        d.extend(msg(0x0a06, 2, 4, &[2, 0, 0x12, 0x34, 9]));
        d.extend(msg(NLMSG_DONE, 2, 4, &0i32.to_ne_bytes()));
        let m = split(&d).unwrap();
        assert_eq!(m.len(), 3);
        assert_eq!((m[0].ty, m[0].seq, m[0].errno()), (NLMSG_ERROR, 3, Some(2)));
        assert_eq!(m[1].generation(), Some(0x1234));
        assert_eq!(m[1].payload().len(), 5);
        assert_eq!(m[2].errno(), Some(0));
    }

    #[test]
    fn rejects_bad_lengths() {
        let mut d = msg(NLMSG_DONE, 0, 1, &[0; 4]);
        d[0] = 200;
        assert!(split(&d).is_err());
        assert!(split(&d[..10]).is_err());
        d[0] = 3;
        assert!(split(&d).is_err());
    }
}
