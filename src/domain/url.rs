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

#[cfg(test)]
mod tests {
    use super::*;

    /// Unreserved bytes and `/` pass; everything else is `%XX` per UTF-8 byte ("é" is C3 A9).
    #[test]
    fn reserved_and_non_ascii_bytes_are_escaped() {
        assert_eq!(urlencode("a-b_c.d~e/f"), "a-b_c.d~e/f");
        assert_eq!(urlencode("a b&c=é?"), "a%20b%26c%3D%C3%A9%3F");
    }
}
