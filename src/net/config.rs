//! Host configuration the network reads: the resolvers DNS queries to
//! 10.0.2.3 are forwarded to.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

/// The resolv.conf to read: `$XDG_CONFIG_HOME/burrow/resolv.conf` (or
/// `~/.config/burrow/resolv.conf`) when the user wrote one, so containers
/// can use other resolvers than the host's; else `/etc/resolv.conf`.
pub fn resolv_conf_path() -> PathBuf {
    let config = std::env::var_os("XDG_CONFIG_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".config")));
    if let Some(own) = config.map(|dir| dir.join("burrow/resolv.conf"))
        && own.is_file()
    {
        return own;
    }
    PathBuf::from("/etc/resolv.conf")
}

/// The `nameserver` lines of a resolv.conf, as port-53 addresses; IPv6
/// servers are kept (the host socket reaches them even though the container
/// speaks IPv4), scoped ones (`fe80::1%eth0`) are skipped. burrow's own
/// file may give a port (`nameserver 127.0.0.1:5353`).
pub fn resolv_conf_servers(text: &str) -> Vec<SocketAddr> {
    text.lines()
        .filter_map(|line| {
            let mut words = line.split_whitespace();
            if words.next()? != "nameserver" {
                return None;
            }
            let word = words.next()?;
            if let Ok(addr) = word.parse::<SocketAddr>() {
                return Some(addr);
            }
            let ip: IpAddr = word.parse().ok()?;
            Some(SocketAddr::new(ip, 53))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nameservers_are_read_in_order() {
        let text = "# generated\nsearch example.com\nnameserver 127.0.0.53\nnameserver ::1\nnameserver fe80::1%eth0\nnameserver 127.0.0.1:5353\noptions edns0\n";
        let want: Vec<SocketAddr> = ["127.0.0.53:53", "[::1]:53", "127.0.0.1:5353"]
            .iter()
            .map(|a| a.parse().unwrap())
            .collect();
        assert_eq!(resolv_conf_servers(text), want);
    }
}
