//! The kernel path for `-p` TCP: a published port's client is joined to a
//! socket inside the container's network namespace (made by `nsock.rs`,
//! bound to the address the container should see as its peer, connected to
//! 10.0.2.100:port), and bytes move between the two sockets with
//! `splice(2)` through a pipe, never entering this process.
//!
//! Both connections are the kernel's own TCP, one on the host's loopback and
//! one on the container's `lo`, so a byte is copied once on each side, as on
//! plain loopback; the userspace stack (smoltcp over the TAP) copied it three
//! times more on its way. The container still sees the client's real
//! address (see `netlink.rs` for how its answers find their way back).

use std::io;
use std::net::{Shutdown, SocketAddr};
use std::os::fd::{AsRawFd, OwnedFd};
use std::time::Instant;

use mio::net::TcpStream;
use nix::errno::Errno;
use nix::fcntl::{FcntlArg, OFlag, SpliceFFlags, fcntl, splice};
use nix::sys::socket::{MsgFlags, SockaddrIn, bind, connect, recv, send, setsockopt, sockopt};

/// How much one splice moves at most: a pipe's worth.
const PIPE_SIZE: usize = 256 * 1024;
/// Empty pipes kept for the next burst.
const SPARE_PIPES: usize = 8;
/// A direction starts out copying through this much of a buffer: a
/// request or an answer that fits costs a `recv` and a `send`, cheaper
/// than two splices and their pipe. The first read that fills it turns the
/// direction over to splicing. At most a page-aligned part of a default
/// pipe, so a remainder always fits in an empty one.
const SMALL: usize = 16 * 1024;

/// A socket from `nsock`, bound to `source` and connecting (non-blocking) to
/// `to` in the container. `EADDRINUSE`/`EADDRNOTAVAIL` mean that exact
/// source is taken (a connection from the same client port still lingers);
/// the caller may retry with port 0.
pub fn connect_inside(
    socket: OwnedFd,
    source: SocketAddr,
    to: SocketAddr,
) -> io::Result<TcpStream> {
    let (SocketAddr::V4(source), SocketAddr::V4(to)) = (source, to) else {
        return Err(io::Error::from(io::ErrorKind::Unsupported));
    };
    bind(socket.as_raw_fd(), &SockaddrIn::from(source))?;
    match connect(socket.as_raw_fd(), &SockaddrIn::from(to)) {
        Ok(()) | Err(Errno::EINPROGRESS) => {}
        Err(e) => return Err(e.into()),
    }
    Ok(TcpStream::from_std(std::net::TcpStream::from(socket)))
}

/// Which of a relay's two sockets an event is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Host,
    Inner,
}

/// One relayed connection.
pub struct Relay {
    pub host: TcpStream,
    pub inner: TcpStream,
    host_ready: Ready,
    inner_ready: Ready,
    /// Host → container.
    up: Pump,
    /// Container → host.
    down: Pump,
    pub last_active: Instant,
    /// For a connection still opening: the published port's index.
    pub opening: Option<usize>,
    opened_at: Instant,
}

#[derive(Default)]
struct Ready {
    readable: bool,
    writable: bool,
    /// Whether the event loop watches this socket for writability too.
    /// A socket starts out watched for reading only: every ACK that frees
    /// send space would otherwise wake the loop, a wake-up per packet for
    /// nothing while the data is small. The first write that would block
    /// (or a connect still on its way) asks for it, for good.
    watched_out: bool,
}

/// One direction: a pipe holding what was read and not yet written.
#[derive(Default)]
struct Pump {
    pipe: Option<Pipe>,
    queued: usize,
    moved: u64,
    eof: bool,
    shut: bool,
    /// Whether reads go straight into a pipe (see [`SMALL`]).
    bulk: bool,
}

struct Pipe {
    read: OwnedFd,
    write: OwnedFd,
}

/// Empty pipes, shared by all relays: a pipe is held only while bytes wait
/// in it, so descriptors and pipe memory follow the connections that are
/// actually backed up, not all of them. Also the one buffer that small
/// reads pass through.
#[derive(Default)]
pub struct Pipes {
    spare: Vec<Pipe>,
    small: Vec<u8>,
}

impl Pipes {
    fn get(&mut self) -> io::Result<Pipe> {
        if let Some(pipe) = self.spare.pop() {
            return Ok(pipe);
        }
        let (read, write) = nix::unistd::pipe2(OFlag::O_CLOEXEC | OFlag::O_NONBLOCK)?;
        // Larger pipes mean fewer splices; past the user's pipe quota the
        // kernel refuses, and the default size still works.
        let _ = fcntl(&write, FcntlArg::F_SETPIPE_SZ(PIPE_SIZE as i32));
        Ok(Pipe { read, write })
    }

    fn put(&mut self, pipe: Pipe) {
        if self.spare.len() < SPARE_PIPES {
            self.spare.push(pipe);
        }
    }
}

/// What a round of pumping found.
#[derive(Debug, PartialEq, Eq)]
pub enum Status {
    Open,
    /// Both directions finished in order.
    Done,
    /// An error or a refused connect: end both sides with a reset.
    Failed,
}

impl Relay {
    pub fn new(host: TcpStream, inner: TcpStream, opening: Option<usize>) -> Relay {
        let now = Instant::now();
        // Both start out as ready: a splice that would block says so, and
        // the request the client has already sent goes in without waiting
        // for the next turn of the loop. While the connect inside is still
        // on its way, splices into it would block, and a refused one fails
        // them.
        let ready = |readable| Ready {
            readable,
            writable: true,
            watched_out: false,
        };
        Relay {
            host,
            inner,
            host_ready: ready(true),
            // Nothing can have come from the container before the event
            // loop watches this socket, and registering it reports what has.
            inner_ready: ready(false),
            up: Pump::default(),
            down: Pump::default(),
            last_active: now,
            opening,
            opened_at: now,
        }
    }

    /// Notes readiness from an (edge-triggered) event; flags stay set until
    /// a call would block.
    pub fn ready(&mut self, side: Side, readable: bool, writable: bool) {
        let ready = match side {
            Side::Host => &mut self.host_ready,
            Side::Inner => &mut self.inner_ready,
        };
        ready.readable |= readable;
        ready.writable |= writable;
    }

    /// Sides that now wait to write and are not yet watched for it; the
    /// event loop adds writability to their interest (once: they stay
    /// watched).
    pub fn unwatched_writes(&mut self) -> (bool, bool) {
        let check = |ready: &mut Ready| {
            let needed = !ready.writable && !ready.watched_out;
            ready.watched_out |= needed;
            needed
        };
        (check(&mut self.host_ready), check(&mut self.inner_ready))
    }

    /// Whether the container has answered (or had its grace time): the
    /// same rule as the userspace path's, see `event_loop::MAX_OPENING`.
    pub fn opened(&self, grace: std::time::Duration) -> bool {
        self.down.moved > 0
            || (self.up.moved > 0 && self.up.queued == 0)
            || self.opened_at.elapsed() >= grace
    }

    /// Moves what both sides allow.
    pub fn pump(&mut self, pipes: &mut Pipes) -> Status {
        self.pump_with(pipes, false)
    }

    /// The first pump, before the event loop watches the sockets: a short
    /// read means the socket is drained, with no second read to hear it
    /// say so, because registering the sockets afterwards reports anything
    /// that came since. (Once watched, a short read is not enough: a FIN
    /// that came with the event that woke the loop raises no new one.)
    pub fn pump_unwatched(&mut self, pipes: &mut Pipes) -> Status {
        self.pump_with(pipes, true)
    }

    fn pump_with(&mut self, pipes: &mut Pipes, unwatched: bool) -> Status {
        let before = self.up.moved + self.down.moved;
        let up = self.up.run(
            self.down.shut,
            Ends {
                from: &self.host,
                from_ready: &mut self.host_ready,
                to: &self.inner,
                to_ready: &mut self.inner_ready,
                unwatched,
            },
            pipes,
        );
        let down = self.down.run(
            self.up.shut,
            Ends {
                from: &self.inner,
                from_ready: &mut self.inner_ready,
                to: &self.host,
                to_ready: &mut self.host_ready,
                unwatched,
            },
            pipes,
        );
        if self.up.moved + self.down.moved != before {
            self.last_active = Instant::now();
        }
        match (up, down) {
            (Err(_), _) | (_, Err(_)) => Status::Failed,
            _ if self.up.finished() && self.down.finished() => Status::Done,
            _ => Status::Open,
        }
    }

    /// Ends both connections with a reset (a linger of zero makes close send
    /// one), so a client of a port nobody listens on inside fails fast.
    pub fn reset(&self) {
        let linger = libc::linger {
            l_onoff: 1,
            l_linger: 0,
        };
        let _ = setsockopt(&self.host, sockopt::Linger, &linger);
        let _ = setsockopt(&self.inner, sockopt::Linger, &linger);
    }

    /// Gives back the pipes this relay holds (their bytes are lost, as
    /// they would be in any reset connection).
    pub fn release(&mut self, pipes: &mut Pipes) {
        for pump in [&mut self.up, &mut self.down] {
            if let Some(pipe) = pump.pipe.take()
                && pump.queued == 0
            {
                pipes.put(pipe);
            }
        }
    }
}

/// A direction's two sockets and what is known of their readiness.
struct Ends<'a> {
    from: &'a TcpStream,
    from_ready: &'a mut Ready,
    to: &'a TcpStream,
    to_ready: &'a mut Ready,
    /// See [`Relay::pump_unwatched`].
    unwatched: bool,
}

impl Pump {
    fn finished(&self) -> bool {
        self.shut
    }

    /// Reads through the small buffer until `from` is drained, then sends
    /// it on; what `to` does not take waits in a pipe, as a splice's bytes
    /// would.
    ///
    /// Reading to the end before sending costs no call more than sending
    /// each read at once (the read that finds the socket drained is made
    /// either way), and it finds a FIN that came with the data: the data
    /// then goes out held back (`MSG_MORE`) for the shutdown or close that
    /// follows at once, which adds the FIN to it. An answer and its end in
    /// one segment save a segment, its ACK and a wake-up of the reader.
    fn copy_small(&mut self, ends: &mut Ends, pipes: &mut Pipes) -> io::Result<()> {
        let Ends {
            from,
            from_ready,
            to,
            to_ready,
            unwatched,
        } = ends;
        pipes.small.resize(SMALL, 0);
        let mut n = 0;
        while n < SMALL {
            match recv(
                from.as_raw_fd(),
                &mut pipes.small[n..],
                MsgFlags::MSG_DONTWAIT,
            ) {
                Ok(0) => {
                    self.eof = true;
                    break;
                }
                Ok(k) => {
                    n += k;
                    // Unwatched, a short read means drained (see
                    // `Relay::pump_unwatched`).
                    if *unwatched && n < SMALL {
                        from_ready.readable = false;
                        break;
                    }
                }
                Err(Errno::EAGAIN) => {
                    from_ready.readable = false;
                    break;
                }
                Err(Errno::EINTR) => {}
                Err(e) => return Err(e.into()),
            }
        }
        if n == 0 {
            return Ok(());
        }
        self.moved += n as u64;
        self.bulk = n == SMALL;
        let hold = if self.eof {
            // (nix names no MSG_MORE.)
            MsgFlags::from_bits_retain(libc::MSG_MORE)
        } else {
            MsgFlags::empty()
        };
        let mut sent = 0;
        while sent < n && to_ready.writable {
            let flags = MsgFlags::MSG_DONTWAIT | MsgFlags::MSG_NOSIGNAL | hold;
            match send(to.as_raw_fd(), &pipes.small[sent..n], flags) {
                Ok(k) => sent += k,
                Err(Errno::EAGAIN) => to_ready.writable = false,
                Err(Errno::EINTR) => {}
                Err(e) => return Err(e.into()),
            }
        }
        if sent < n {
            let pipe = self.pipe.insert(pipes.get()?);
            // An empty pipe holds at least SMALL bytes: this cannot block.
            let k = nix::unistd::write(&pipe.write, &pipes.small[sent..n])?;
            if k != n - sent {
                return Err(io::Error::other("a pipe took less than a small read"));
            }
            self.queued = n - sent;
        }
        Ok(())
    }

    /// Splices `from` → pipe → `to` until one side would block.
    /// `last`: the other direction is finished, so this one's end finishes
    /// the relay, and the close that follows sends the FIN.
    fn run(&mut self, last: bool, mut ends: Ends, pipes: &mut Pipes) -> io::Result<()> {
        let flags = SpliceFFlags::SPLICE_F_MOVE | SpliceFFlags::SPLICE_F_NONBLOCK;
        loop {
            if self.queued > 0 {
                if !ends.to_ready.writable {
                    return Ok(());
                }
                let pipe = self.pipe.as_ref().expect("queued bytes are in a pipe");
                match splice(&pipe.read, None, ends.to, None, self.queued, flags) {
                    Ok(n) => self.queued -= n,
                    Err(Errno::EAGAIN) => ends.to_ready.writable = false,
                    Err(Errno::EINTR) => {}
                    Err(e) => return Err(e.into()),
                }
                continue;
            }
            if let Some(pipe) = self.pipe.take() {
                pipes.put(pipe);
            }
            if self.eof {
                if !self.shut {
                    // Everything before the FIN is written: pass it on.
                    // (`to` has nothing left to read once the other
                    // direction is finished, so closing it sends a FIN,
                    // not a reset.)
                    if !last {
                        let _ = ends.to.shutdown(Shutdown::Write);
                    }
                    self.shut = true;
                }
                return Ok(());
            }
            if !ends.from_ready.readable {
                return Ok(());
            }
            if !self.bulk {
                self.copy_small(&mut ends, pipes)?;
                continue;
            }
            let pipe = self.pipe.insert(pipes.get()?);
            match splice(ends.from, None, &pipe.write, None, PIPE_SIZE, flags) {
                Ok(0) => self.eof = true,
                Ok(n) => {
                    self.queued = n;
                    self.moved += n as u64;
                }
                // The pipe is empty, so it is the socket that has nothing.
                Err(Errno::EAGAIN) => ends.from_ready.readable = false,
                Err(Errno::EINTR) => {}
                Err(e) => return Err(e.into()),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::net::TcpListener;

    /// A connected pair of mio streams over loopback, and their std peers.
    fn pair() -> (TcpStream, std::net::TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let peer = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (ours, _) = listener.accept().unwrap();
        ours.set_nonblocking(true).unwrap();
        (TcpStream::from_std(ours), peer)
    }

    /// A non-blocking TCP socket, as the maker's without their privileges.
    fn plain_socket() -> OwnedFd {
        nix::sys::socket::socket(
            nix::sys::socket::AddressFamily::Inet,
            nix::sys::socket::SockType::Stream,
            nix::sys::socket::SockFlag::SOCK_NONBLOCK,
            None,
        )
        .unwrap()
    }

    /// A relay between two fresh connections, and their far ends: the
    /// client's and the server's.
    fn relayed() -> (Relay, Pipes, std::net::TcpStream, std::net::TcpStream) {
        let (host, client) = pair();
        let (inner, server) = pair();
        (
            Relay::new(host, inner, None),
            Pipes::default(),
            client,
            server,
        )
    }

    /// Pumps until `done` says so or a few seconds pass.
    fn drive(
        relay: &mut Relay,
        pipes: &mut Pipes,
        mut done: impl FnMut(&Status) -> bool,
    ) -> Status {
        let deadline = Instant::now() + std::time::Duration::from_secs(10);
        loop {
            // Level-triggered stand-in for the event loop.
            relay.ready(Side::Host, true, true);
            relay.ready(Side::Inner, true, true);
            let status = relay.pump(pipes);
            if done(&status) || Instant::now() > deadline {
                return status;
            }
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
    }

    #[test]
    fn bytes_cross_both_ways_and_fins_follow_the_data() {
        let (mut relay, mut pipes, mut client, mut server) = relayed();
        // More than a pipe holds, so a splice must stop and resume.
        let up: Vec<u8> = (0..3 * PIPE_SIZE + 7).map(|i| (i % 251) as u8).collect();
        let sender = {
            let up = up.clone();
            std::thread::spawn(move || {
                client.write_all(&up).unwrap();
                client.shutdown(Shutdown::Write).unwrap();
                let mut back = Vec::new();
                client.read_to_end(&mut back).unwrap();
                back
            })
        };
        let receiver = std::thread::spawn(move || {
            let mut got = Vec::new();
            server.read_to_end(&mut got).unwrap();
            server.write_all(b"thanks").unwrap();
            server.shutdown(Shutdown::Write).unwrap();
            got
        });
        let status = drive(&mut relay, &mut pipes, |s| *s != Status::Open);
        assert_eq!(status, Status::Done);
        // The last FIN goes with the close, as the event loop's drop does.
        relay.release(&mut pipes);
        drop(relay);
        assert_eq!(receiver.join().unwrap(), up);
        assert_eq!(sender.join().unwrap(), b"thanks");
        assert!(pipes.spare.len() <= SPARE_PIPES);
    }

    #[test]
    fn a_small_read_the_other_side_cannot_take_yet_waits_in_a_pipe() {
        let (mut relay, mut pipes, mut client, mut server) = relayed();
        client.write_all(b"hello").unwrap();
        // As if the connect inside were still on its way.
        relay.inner_ready.writable = false;
        let deadline = Instant::now() + std::time::Duration::from_secs(10);
        while relay.up.queued == 0 && Instant::now() < deadline {
            relay.host_ready.readable = true;
            assert_eq!(relay.pump(&mut pipes), Status::Open);
        }
        assert_eq!(relay.up.queued, 5);
        assert!(!relay.up.bulk);
        client.write_all(b", world").unwrap();
        client.shutdown(Shutdown::Write).unwrap();
        server.shutdown(Shutdown::Write).unwrap();
        let status = drive(&mut relay, &mut pipes, |s| *s != Status::Open);
        assert_eq!(status, Status::Done);
        drop(relay);
        let mut got = Vec::new();
        server.read_to_end(&mut got).unwrap();
        assert_eq!(got, b"hello, world");
    }

    /// Segments a socket has sent so far (`TCP_INFO`, which nix lacks).
    #[allow(unsafe_code)]
    fn segments_out(socket: &TcpStream) -> u32 {
        // SAFETY: tcp_info is plain data, so all zeroes is a valid value.
        let mut info: libc::tcp_info = unsafe { std::mem::zeroed() };
        let mut len = std::mem::size_of::<libc::tcp_info>() as libc::socklen_t;
        // SAFETY: `info` is a tcp_info of `len` bytes, and the kernel
        // writes at most `len` bytes into it.
        let r = unsafe {
            libc::getsockopt(
                socket.as_raw_fd(),
                libc::IPPROTO_TCP,
                libc::TCP_INFO,
                (&raw mut info).cast(),
                &mut len,
            )
        };
        assert_eq!(r, 0, "TCP_INFO: {}", io::Error::last_os_error());
        info.tcpi_segs_out
    }

    #[test]
    fn an_answer_and_its_fin_leave_in_one_segment() {
        let (mut relay, mut pipes, mut client, mut server) = relayed();
        server.write_all(b"answer").unwrap();
        server.shutdown(Shutdown::Write).unwrap();
        // Both in the relay's socket before it reads, as when the loop
        // wakes to an answer sent and closed at once.
        std::thread::sleep(std::time::Duration::from_millis(50));
        let before = segments_out(&relay.host);
        relay.ready(Side::Inner, true, false);
        assert_eq!(relay.pump(&mut pipes), Status::Open);
        assert!(relay.down.shut);
        assert_eq!(segments_out(&relay.host) - before, 1, "data and FIN apart");
        let mut got = Vec::new();
        client.read_to_end(&mut got).unwrap();
        assert_eq!(got, b"answer");
    }

    #[test]
    fn a_refused_connect_fails_the_relay() {
        let (host, _client) = pair();
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        // Nothing listens there any more.
        let socket = plain_socket();
        let inner = connect_inside(socket, "127.0.0.1:0".parse().unwrap(), port).unwrap();
        let mut relay = Relay::new(host, inner, None);
        let status = drive(&mut relay, &mut Pipes::default(), |s| *s != Status::Open);
        assert_eq!(status, Status::Failed);
    }
}
