/// FNV-1a over the parts, separated: stable across runs, platforms and Rust versions
/// (unlike `DefaultHasher`), so ids and routing derived from it are deterministic.
pub fn stable_hash(parts: &[&[u8]]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for part in parts {
        for b in part.iter().chain(std::iter::once(&0xffu8)) {
            h ^= *b as u64;
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    }
    h
}

#[cfg(test)]
mod tests {
    #[test]
    fn separates_parts() {
        assert_ne!(super::stable_hash(&[b"ab", b"c"]), super::stable_hash(&[b"a", b"bc"]));
        assert_eq!(super::stable_hash(&[b"x"]), super::stable_hash(&[b"x"]));
    }
}
