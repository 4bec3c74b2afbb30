//! Host configuration the network reads: the resolvers of /etc/resolv.conf.

use std::net::{IpAddr, SocketAddr};

/// The `nameserver` lines of a resolv.conf, as port-53 addresses; IPv6
/// servers are kept (the host socket reaches them even though the container
/// speaks IPv4), scoped ones (`fe80::1%eth0`) are skipped.
pub fn resolv_conf_servers(text: &str) -> Vec<SocketAddr> {
    text.lines()
        .filter_map(|line| {
            let mut words = line.split_whitespace();
            if words.next()? != "nameserver" {
                return None;
            }
            let ip: IpAddr = words.next()?.parse().ok()?;
            Some(SocketAddr::new(ip, 53))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nameservers_are_read_in_order() {
        let text = "# generated\nsearch example.com\nnameserver 127.0.0.53\nnameserver ::1\nnameserver fe80::1%eth0\noptions edns0\n";
        let got = resolv_conf_servers(text);
        assert_eq!(
            got,
            vec![
                "127.0.0.53:53".parse().unwrap(),
                "[::1]:53".parse().unwrap()
            ]
        );
    }
}
