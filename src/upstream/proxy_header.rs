//! The PROXY protocol header (HAProxy's `proxy-protocol.txt`, v1 text and v2 binary) that
//! ringway sends first on a new upstream connection, so the server learns the real client
//! and the address the client connected to.
//!
//! Pure and allocation-free apart from the output buffer: [`write`] appends one header.
//! Both addresses go in one family: an IPv4-mapped IPv6 address (`::ffff:a.b.c.d`, what a
//! dual-stack listener reports) is written as the IPv4 address it is, and when the two
//! sides still differ in family both are written as IPv6 (an IPv4 one mapped), since a
//! header has room for only one family.

use std::net::{IpAddr, Ipv6Addr, SocketAddr};

use crate::snapshot::ProxyProtocol;

/// The 12 bytes every v2 header starts with.
pub const V2_SIGNATURE: [u8; 12] = *b"\r\n\r\n\0\r\nQUIT\n";
/// Longest v1 header the specification allows (a TCP6 line with the longest addresses).
pub const V1_MAX: usize = 107;
/// v2 version (2) and command (PROXY: the addresses are the original connection's).
const V2_PROXY: u8 = 0x21;
/// v2 address family and transport: TCP over IPv4, TCP over IPv6.
const V2_TCP4: u8 = 0x11;
const V2_TCP6: u8 = 0x21;

/// Appends the header `version` asks for (nothing for `Off`) saying that `client`
/// connected to `listener`.
pub fn write(version: ProxyProtocol, client: SocketAddr, listener: SocketAddr, out: &mut Vec<u8>) {
    let (src, dst) = same_family(client, listener);
    match version {
        ProxyProtocol::Off => {}
        ProxyProtocol::V1 => write_v1(src, dst, out),
        ProxyProtocol::V2 => write_v2(src, dst, out),
    }
}

/// Both addresses in one family (see the module doc).
fn same_family(a: SocketAddr, b: SocketAddr) -> (SocketAddr, SocketAddr) {
    let canon = |s: SocketAddr| SocketAddr::new(s.ip().to_canonical(), s.port());
    let (a, b) = (canon(a), canon(b));
    if a.is_ipv4() == b.is_ipv4() {
        return (a, b);
    }
    let six = |s: SocketAddr| match s.ip() {
        IpAddr::V4(v4) => SocketAddr::new(IpAddr::V6(v4.to_ipv6_mapped()), s.port()),
        IpAddr::V6(_) => s,
    };
    (six(a), six(b))
}

fn write_v1(src: SocketAddr, dst: SocketAddr, out: &mut Vec<u8>) {
    use std::io::Write;
    let proto = if src.is_ipv4() { "TCP4" } else { "TCP6" };
    // Writing into a Vec cannot fail. IPv6 is written in its compressed form, which the
    // specification requires receivers to accept.
    let _ = write!(
        out,
        "PROXY {proto} {} {} {} {}\r\n",
        src.ip(),
        dst.ip(),
        src.port(),
        dst.port()
    );
}

fn write_v2(src: SocketAddr, dst: SocketAddr, out: &mut Vec<u8>) {
    out.extend_from_slice(&V2_SIGNATURE);
    out.push(V2_PROXY);
    match (src.ip(), dst.ip()) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            out.push(V2_TCP4);
            out.extend_from_slice(&12u16.to_be_bytes());
            out.extend_from_slice(&s.octets());
            out.extend_from_slice(&d.octets());
        }
        (s, d) => {
            out.push(V2_TCP6);
            out.extend_from_slice(&36u16.to_be_bytes());
            out.extend_from_slice(&v6(s).octets());
            out.extend_from_slice(&v6(d).octets());
        }
    }
    out.extend_from_slice(&src.port().to_be_bytes());
    out.extend_from_slice(&dst.port().to_be_bytes());
}

fn v6(ip: IpAddr) -> Ipv6Addr {
    match ip {
        IpAddr::V4(v4) => v4.to_ipv6_mapped(),
        IpAddr::V6(v6) => v6,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(version: ProxyProtocol, client: &str, listener: &str) -> Vec<u8> {
        let mut out = Vec::new();
        write(
            version,
            client.parse().unwrap(),
            listener.parse().unwrap(),
            &mut out,
        );
        out
    }

    #[test]
    fn v1_ipv4_is_one_text_line() {
        let h = header(ProxyProtocol::V1, "192.0.2.7:51234", "10.0.0.1:443");
        assert_eq!(h, b"PROXY TCP4 192.0.2.7 10.0.0.1 51234 443\r\n");
    }

    #[test]
    fn v1_ipv6_uses_tcp6_and_compressed_addresses() {
        let h = header(ProxyProtocol::V1, "[::1]:40000", "[2001:db8::5]:8443");
        assert_eq!(h, b"PROXY TCP6 ::1 2001:db8::5 40000 8443\r\n");
    }

    #[test]
    fn v1_never_exceeds_the_specified_maximum() {
        let long = "[ffff:ffff:ffff:ffff:ffff:ffff:ffff:fffe]:65535";
        let h = header(ProxyProtocol::V1, long, long);
        assert!(h.len() <= V1_MAX, "{} bytes", h.len());
        assert!(h.ends_with(b"\r\n"));
    }

    #[test]
    fn v2_ipv4_has_signature_command_family_length_addresses_ports() {
        let h = header(ProxyProtocol::V2, "192.0.2.7:51234", "10.0.0.1:443");
        let mut want = V2_SIGNATURE.to_vec();
        want.extend_from_slice(&[0x21, 0x11, 0, 12]);
        want.extend_from_slice(&[192, 0, 2, 7, 10, 0, 0, 1]);
        want.extend_from_slice(&51234u16.to_be_bytes());
        want.extend_from_slice(&443u16.to_be_bytes());
        assert_eq!(h, want);
        assert_eq!(h.len(), 16 + 12);
    }

    #[test]
    fn v2_ipv6_carries_36_address_bytes() {
        let h = header(ProxyProtocol::V2, "[::1]:40000", "[2001:db8::5]:8443");
        assert_eq!(&h[..12], &V2_SIGNATURE);
        assert_eq!(&h[12..16], &[0x21, 0x21, 0, 36]);
        let src: Ipv6Addr = "::1".parse().unwrap();
        let dst: Ipv6Addr = "2001:db8::5".parse().unwrap();
        assert_eq!(&h[16..32], &src.octets());
        assert_eq!(&h[32..48], &dst.octets());
        assert_eq!(&h[48..52], &[0x9c, 0x40, 0x20, 0xfb]);
        assert_eq!(h.len(), 16 + 36);
    }

    #[test]
    fn mapped_ipv4_is_written_as_ipv4() {
        let h = header(ProxyProtocol::V1, "[::ffff:192.0.2.7]:1000", "10.0.0.1:80");
        assert_eq!(h, b"PROXY TCP4 192.0.2.7 10.0.0.1 1000 80\r\n");
    }

    #[test]
    fn mixed_families_are_both_written_as_ipv6() {
        let h = header(ProxyProtocol::V1, "192.0.2.7:1000", "[2001:db8::1]:80");
        assert_eq!(h, b"PROXY TCP6 ::ffff:192.0.2.7 2001:db8::1 1000 80\r\n");
        let h = header(ProxyProtocol::V2, "192.0.2.7:1000", "[2001:db8::1]:80");
        assert_eq!(&h[12..16], &[0x21, 0x21, 0, 36]);
        assert_eq!(
            &h[16..32],
            &"::ffff:192.0.2.7".parse::<Ipv6Addr>().unwrap().octets()
        );
    }

    #[test]
    fn off_writes_nothing_and_output_is_appended() {
        assert!(header(ProxyProtocol::Off, "1.2.3.4:5", "6.7.8.9:10").is_empty());
        let mut out = b"x".to_vec();
        write(
            ProxyProtocol::V1,
            "1.2.3.4:5".parse().unwrap(),
            "6.7.8.9:10".parse().unwrap(),
            &mut out,
        );
        assert_eq!(out, b"xPROXY TCP4 1.2.3.4 6.7.8.9 5 10\r\n");
    }

    #[test]
    fn any_address_pair_gives_a_well_formed_header() {
        // Seeded sweep over both families and edge ports: v1 stays one bounded line, v2's
        // length field always matches the bytes that follow it.
        let mut x: u64 = 0x2545_F491_4F6C_DD1D;
        for _ in 0..2000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let port = |k: u64| if k.is_multiple_of(3) { 0 } else { k as u16 };
            let addr = |k: u64| -> SocketAddr {
                if k & 1 == 0 {
                    SocketAddr::new(IpAddr::from(((k >> 8) as u32).to_be_bytes()), port(k >> 3))
                } else {
                    let ip = Ipv6Addr::from(u128::from(k) << 64 | u128::from(k.rotate_left(7)));
                    SocketAddr::new(IpAddr::V6(ip), port(k >> 5))
                }
            };
            let (a, b) = (addr(x), addr(x.rotate_left(29)));
            let mut v1 = Vec::new();
            write(ProxyProtocol::V1, a, b, &mut v1);
            assert!(v1.len() <= V1_MAX && v1.starts_with(b"PROXY TCP") && v1.ends_with(b"\r\n"));
            assert_eq!(v1.iter().filter(|&&c| c == b'\n').count(), 1);
            let mut v2 = Vec::new();
            write(ProxyProtocol::V2, a, b, &mut v2);
            let len = u16::from_be_bytes([v2[14], v2[15]]) as usize;
            assert_eq!(v2.len(), 16 + len);
        }
    }
}
