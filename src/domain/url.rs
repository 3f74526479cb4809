//! Percent-encoding for the paths and query values Vitals builds (links in pages and messages,
//! provider requests). Unreserved characters and `/` stay as they are.

pub fn urlencode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~/".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// `next` when it is a path on this site, else `None`. Browsers strip tabs and line breaks from
/// a `Location` and read `\` as `/`, so `/\t/evil.example` would leave the site as
/// `//evil.example`, and a CR or LF would break the header: only visible ASCII other than `\`
/// is accepted (anything else arrives percent-encoded), starting with one `/`.
pub fn same_site_path(next: &str) -> Option<&str> {
    let visible = next
        .bytes()
        .all(|b| (0x21..=0x7e).contains(&b) && b != b'\\');
    (visible && next.starts_with('/') && !next.starts_with("//")).then_some(next)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Paths on the site pass as they are; schemes, protocol-relative forms and every byte a
    /// browser strips or rewrites (tab, CR, LF, space, backslash, non-ASCII) are refused.
    #[test]
    fn only_clean_same_site_paths_pass() {
        for ok in ["/", "/o/acme/alerts?state=firing", "/o/a%20b/"] {
            assert_eq!(same_site_path(ok), Some(ok));
        }
        for bad in [
            "",
            "evil.example",
            "https://evil.example/",
            "//evil.example",
            "/\\evil.example",
            "/\t/evil.example",
            "/\r\nSet-Cookie: x=1",
            "/ /evil",
            "/é",
            "\\/evil",
        ] {
            assert_eq!(same_site_path(bad), None, "{bad:?}");
        }
    }

    /// Unreserved bytes and `/` pass; everything else is `%XX` per UTF-8 byte ("é" is C3 A9).
    #[test]
    fn reserved_and_non_ascii_bytes_are_escaped() {
        assert_eq!(urlencode("a-b_c.d~e/f"), "a-b_c.d~e/f");
        assert_eq!(urlencode("a b&c=é?"), "a%20b%26c%3D%C3%A9%3F");
    }
}
