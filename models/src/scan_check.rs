//! Whether a baseline JPEG's entropy-coded data is whole: every Huffman code valid, every
//! block's coefficients within the block, restart markers in order, and the data neither
//! ending before the last block nor running on after it.
//!
//! Decoders are lenient by design: zune-jpeg (like most) decodes a scan with garbage in it,
//! or cut short and closed with an end-of-image marker, into a picture of noise or grey,
//! and says nothing. A detector run on that sees things. libjpeg warns in these cases
//! ("Corrupt JPEG data: ..."); this walks the scan as its Huffman decoder does, without the
//! inverse DCT or colour conversion (a fraction of a decode), so such frames are refused.
//! Progressive and multi-scan JPEGs are not checked (samplers and cameras send baseline).

/// Why a scan is damaged, or `Ok` when it is whole or not checked.
pub fn check(jpeg: &[u8]) -> Result<(), String> {
    let Some(layout) = Layout::read(jpeg)? else { return Ok(()) };
    layout.walk(jpeg, None)
}

/// The brightness of every 8x8 block of the picture, from the same walk (the blocks' DC
/// coefficients: a picture at 1/8 scale, for nothing beyond the check): each block's mean
/// luma less 128, in MCU order. `Ok(None)` when the JPEG is not one the walk reads
/// (progressive, several scans); `Err` when the scan is damaged, as [`check`] says.
pub fn block_brightness(jpeg: &[u8]) -> Result<Option<Vec<i16>>, String> {
    let Some(layout) = Layout::read(jpeg)? else { return Ok(None) };
    let mut dc = Vec::with_capacity(layout.mcus * layout.scan[0].blocks);
    layout.walk(jpeg, Some(&mut dc))?;
    // A DC coefficient is 8 x the block's mean (less 128), in steps of the DC quantizer.
    let step = layout.luma_dc_step as i32;
    Ok(Some(dc.into_iter().map(|d| ((d * step) / 8).clamp(-128, 127) as i16).collect()))
}

/// Width and height from the frame header (SOFn), read without decoding.
pub fn frame_size(jpeg: &[u8]) -> Option<(u32, u32)> {
    let mut i = 2;
    while i + 9 <= jpeg.len() && jpeg[i] == 0xFF {
        let marker = jpeg[i + 1];
        if matches!(marker, 0xC0..=0xCF) && !matches!(marker, 0xC4 | 0xC8 | 0xCC) {
            let height = u16::from_be_bytes([jpeg[i + 5], jpeg[i + 6]]) as u32;
            let width = u16::from_be_bytes([jpeg[i + 7], jpeg[i + 8]]) as u32;
            return Some((width, height));
        }
        i += 2 + u16::from_be_bytes([jpeg[i + 2], jpeg[i + 3]]) as usize;
    }
    None
}

/// A Huffman table as canonical codes: per code length, the largest code and where its
/// symbols start, plus an 8-bit lookahead for the short codes.
struct Huffman {
    max_code: [i32; 18],
    val_offset: [i32; 17],
    symbols: Vec<u8>,
    /// For the next 8 bits: the code's length (0: longer than 8) and symbol.
    fast: [(u8, u8); 256],
    /// For the next `AC_LOOKAHEAD` bits, as an AC table: the bits of the code and of the
    /// coefficient's value together (0: more than fit) and how far the block's position moves
    /// (0: end of block). Most coefficients then take one lookup, as decoders do it.
    fast_ac: Vec<(u8, u8)>,
}

const AC_LOOKAHEAD: u32 = 10;

impl Huffman {
    fn new(counts: &[u8; 16], symbols: &[u8]) -> Result<Huffman, String> {
        let mut max_code = [-1i32; 18];
        let mut val_offset = [0i32; 17];
        let mut fast = [(0u8, 0u8); 256];
        let (mut code, mut k) = (0i32, 0usize);
        for len in 1..=16 {
            let n = counts[len - 1] as usize;
            val_offset[len] = k as i32 - code;
            for _ in 0..n {
                if len <= 8 {
                    let first = (code << (8 - len)) as usize;
                    for entry in fast.iter_mut().skip(first).take(1 << (8 - len)) {
                        *entry = (len as u8, symbols[k]);
                    }
                }
                code += 1;
                k += 1;
            }
            if n > 0 {
                max_code[len] = code - 1;
            }
            if code > 1 << len {
                return Err("a Huffman table has more codes than fit".into());
            }
            code <<= 1;
        }
        max_code[17] = i32::MAX;
        let mut fast_ac = vec![(0u8, 0u8); 1 << AC_LOOKAHEAD];
        let (mut code, mut k) = (0u32, 0usize);
        for len in 1..=16u32 {
            for _ in 0..counts[len as usize - 1] {
                let (run, size) = ((symbols[k] >> 4) as u32, (symbols[k] & 15) as u32);
                let (bits, advance) = match (run, size) {
                    (0, 0) => (len, 0),
                    (15, 0) => (len, 16),
                    // Other sizes of 0 are not valid AC symbols: the slow path says so.
                    (_, 0) => (0, 0),
                    _ => (len + size, run + 1),
                };
                if bits > 0 && bits <= AC_LOOKAHEAD {
                    // Every lookahead that starts with this code (its value bits are any).
                    let first = (code << (AC_LOOKAHEAD - len)) as usize;
                    for entry in fast_ac.iter_mut().skip(first).take(1 << (AC_LOOKAHEAD - len)) {
                        *entry = (bits as u8, advance as u8);
                    }
                }
                code += 1;
                k += 1;
            }
            code <<= 1;
        }
        Ok(Huffman { max_code, val_offset, symbols: symbols.to_vec(), fast, fast_ac })
    }
}

struct Component {
    id: u8,
    h: usize,
    v: usize,
    /// Its quantization table.
    tq: usize,
}

struct ScanComponent {
    blocks: usize,
    dc: usize,
    ac: usize,
}

/// What the walk needs from the headers of a baseline JPEG with one interleaved scan.
struct Layout {
    mcus: usize,
    mcus_per_row: usize,
    restart_interval: usize,
    scan: Vec<ScanComponent>,
    /// DC tables 0-3, then AC tables 0-3.
    tables: Vec<Option<Huffman>>,
    data_start: usize,
    /// The DC quantizer of the first component (luma), 1 when no table says.
    luma_dc_step: u16,
}

impl Layout {
    /// The layout, or None when the JPEG is not one this checks (progressive, arithmetic,
    /// several scans, or headers the decoder will refuse anyway).
    fn read(jpeg: &[u8]) -> Result<Option<Layout>, String> {
        let mut tables: Vec<Option<Huffman>> = (0..8).map(|_| None).collect();
        let (mut size, mut components) = (None, Vec::new());
        let mut restart_interval = 0;
        let mut dc_steps = [1u16; 4];
        let mut i = 2;
        while i + 4 <= jpeg.len() {
            if jpeg[i] != 0xFF {
                return Ok(None);
            }
            let marker = jpeg[i + 1];
            if marker == 0xFF {
                i += 1;
                continue;
            }
            let len = u16::from_be_bytes([jpeg[i + 2], jpeg[i + 3]]) as usize;
            let Some(body) = jpeg.get(i + 4..i + 2 + len) else { return Ok(None) };
            match marker {
                // Baseline or extended sequential, Huffman-coded.
                0xC0 | 0xC1 => {
                    if body.len() < 6 {
                        return Ok(None);
                    }
                    let height = u16::from_be_bytes([body[1], body[2]]) as usize;
                    let width = u16::from_be_bytes([body[3], body[4]]) as usize;
                    for c in body[6..].chunks_exact(3).take(body[5] as usize) {
                        components.push(Component {
                            id: c[0],
                            h: (c[1] >> 4) as usize,
                            v: (c[1] & 15) as usize,
                            tq: (c[2] & 3) as usize,
                        });
                    }
                    if components.is_empty()
                        || components.iter().any(|c| !(1..=4).contains(&c.h) || !(1..=4).contains(&c.v))
                    {
                        return Ok(None);
                    }
                    size = Some((width, height));
                }
                // Any other frame type (progressive, lossless, arithmetic): not checked.
                0xC2..=0xCF if !matches!(marker, 0xC4 | 0xC8 | 0xCC) => return Ok(None),
                0xC4 => {
                    let mut t = body;
                    while t.len() >= 17 {
                        let (class, id) = ((t[0] >> 4) as usize, (t[0] & 15) as usize);
                        let counts: [u8; 16] = t[1..17].try_into().expect("16 counts");
                        let n: usize = counts.iter().map(|&c| c as usize).sum();
                        let Some(symbols) = t.get(17..17 + n) else { return Ok(None) };
                        if class > 1 || id > 3 {
                            return Ok(None);
                        }
                        tables[class * 4 + id] = Some(Huffman::new(&counts, symbols)?);
                        t = &t[17 + n..];
                    }
                }
                0xDB => {
                    let mut t = body;
                    while let Some(&pq_tq) = t.first() {
                        let (wide, id) = (pq_tq >> 4 == 1, (pq_tq & 3) as usize);
                        let size = if wide { 129 } else { 65 };
                        if t.len() < size {
                            break;
                        }
                        dc_steps[id] = if wide { u16::from_be_bytes([t[1], t[2]]) } else { t[1] as u16 }.max(1);
                        t = &t[size..];
                    }
                }
                0xDD if body.len() >= 2 => restart_interval = u16::from_be_bytes([body[0], body[1]]) as usize,
                0xDA => {
                    let Some((width, height)) = size else { return Ok(None) };
                    let n = *body.first().unwrap_or(&0) as usize;
                    // Only a scan of every component (one pass over the image) is walked.
                    if n != components.len() || body.len() < 1 + 2 * n {
                        return Ok(None);
                    }
                    let (hmax, vmax) = (
                        components.iter().map(|c| c.h).max().unwrap_or(1),
                        components.iter().map(|c| c.v).max().unwrap_or(1),
                    );
                    let mut scan = Vec::new();
                    for s in body[1..1 + 2 * n].chunks_exact(2) {
                        let Some(c) = components.iter().find(|c| c.id == s[0]) else { return Ok(None) };
                        let (dc, ac) = ((s[1] >> 4) as usize, 4 + (s[1] & 15) as usize);
                        if dc > 3 || ac > 7 || tables[dc].is_none() || tables[ac].is_none() {
                            return Ok(None);
                        }
                        // One component alone is coded block by block, not in MCUs of h x v.
                        let blocks = if n == 1 { 1 } else { c.h * c.v };
                        scan.push(ScanComponent { blocks, dc, ac });
                    }
                    let (mcus_per_row, rows) = if n == 1 {
                        let c = &components[0];
                        ((width * c.h).div_ceil(8 * hmax), (height * c.v).div_ceil(8 * vmax))
                    } else {
                        (width.div_ceil(8 * hmax), height.div_ceil(8 * vmax))
                    };
                    return Ok(Some(Layout {
                        mcus: mcus_per_row * rows,
                        mcus_per_row,
                        restart_interval,
                        scan,
                        tables,
                        data_start: i + 2 + len,
                        luma_dc_step: dc_steps[components[0].tq],
                    }));
                }
                _ => {}
            }
            i += 2 + len;
        }
        Ok(None)
    }

    /// Decodes every block's Huffman codes, as a decoder would, and says where it went wrong.
    /// With `luma_dc`, also the DC coefficient of each block of the first component.
    fn walk(&self, jpeg: &[u8], mut luma_dc: Option<&mut Vec<i32>>) -> Result<(), String> {
        let mut bits = Bits::new(jpeg, self.data_start);
        // DC coefficients are coded as differences from the last block of the component.
        let mut predictor = 0i32;
        let at = |mcu: usize| {
            format!("block row {} of {}", mcu / self.mcus_per_row + 1, self.mcus.div_ceil(self.mcus_per_row))
        };
        for mcu in 0..self.mcus {
            if self.restart_interval > 0 && mcu > 0 && mcu % self.restart_interval == 0 {
                let expected = 0xD0 + ((mcu / self.restart_interval - 1) % 8) as u8;
                predictor = 0;
                match bits.restart() {
                    Some(m) if m == expected => {}
                    found => {
                        return Err(damaged(&format!(
                            "restart marker {} where RST{} belongs ({})",
                            found.map_or("missing".into(), |m| format!("{m:02X}")),
                            expected - 0xD0,
                            at(mcu)
                        )))
                    }
                }
            }
            for (i, c) in self.scan.iter().enumerate() {
                let (dc, ac) = (self.tables[c.dc].as_ref().expect("dc"), self.tables[c.ac].as_ref().expect("ac"));
                for _ in 0..c.blocks {
                    let diff = block(&mut bits, dc, ac).map_err(|why| damaged(&format!("{why} ({})", at(mcu))))?;
                    if let (0, Some(out)) = (i, luma_dc.as_deref_mut()) {
                        predictor += diff;
                        out.push(predictor);
                    }
                }
            }
            if bits.past_end {
                return Err(damaged(&format!(
                    "the data ends before the image does ({}): was it cut short and closed?",
                    at(mcu)
                )));
            }
        }
        // What follows the last block: at most a byte of padding before the next marker.
        let extra = bits.bytes_left_before_marker();
        if extra > 8 {
            return Err(damaged(&format!("{extra} bytes of data after the last block")));
        }
        Ok(())
    }
}

fn damaged(why: &str) -> String {
    format!("damaged: the JPEG's compressed data is corrupt: {why}; the frame is refused rather than decoded as noise")
}

/// One 8x8 block: a DC difference (returned) and up to 63 AC coefficients.
fn block(bits: &mut Bits, dc: &Huffman, ac: &Huffman) -> Result<i32, &'static str> {
    let s = bits.symbol(dc).ok_or("an invalid Huffman code")?;
    if s > 11 {
        return Err("a DC difference longer than 11 bits");
    }
    let diff = bits.value(s as u32);
    let mut k = 1;
    while k < 64 {
        let (taken, advance) = ac.fast_ac[bits.peek(AC_LOOKAHEAD) as usize];
        if taken > 0 {
            bits.consume(taken as u32);
            if advance == 0 {
                break;
            }
            k += advance as usize;
            continue;
        }
        let rs = bits.symbol(ac).ok_or("an invalid Huffman code")?;
        let (run, size) = ((rs >> 4) as usize, (rs & 15) as u32);
        if size == 0 {
            if run == 15 {
                k += 16;
                continue;
            }
            break;
        }
        k += run;
        if k > 63 {
            return Err("coefficients past the end of a block");
        }
        bits.skip(size);
        k += 1;
    }
    if k > 64 {
        return Err("coefficients past the end of a block");
    }
    Ok(diff)
}

/// The entropy-coded bits, with byte stuffing (FF 00) undone. At a marker (or the end of the
/// data) it reads zeros, as decoders do, and notes when a block needed them.
struct Bits<'a> {
    data: &'a [u8],
    pos: usize,
    buffer: u64,
    /// Bits in `buffer`, the last `padding` of them zeros read at a marker.
    count: u32,
    padding: u32,
    /// Whether a block took bits that are not in the data.
    past_end: bool,
}

impl<'a> Bits<'a> {
    fn new(data: &'a [u8], pos: usize) -> Bits<'a> {
        Bits { data, pos, buffer: 0, count: 0, padding: 0, past_end: false }
    }

    fn fill(&mut self) {
        // Most of the data has no FF byte (no stuffing, no marker): take whole bytes at once.
        if let Some(chunk) = self.data.get(self.pos..self.pos + 8) {
            let word = u64::from_be_bytes(chunk.try_into().expect("8 bytes"));
            let ones = 0x0101_0101_0101_0101u64;
            let has_ff = (!word).wrapping_sub(ones) & word & (ones << 7) != 0;
            if !has_ff {
                let take = (64 - self.count) / 8;
                self.buffer = if take == 8 { word } else { (self.buffer << (take * 8)) | (word >> (64 - take * 8)) };
                self.pos += take as usize;
                self.count += take * 8;
                return;
            }
        }
        while self.count <= 56 {
            let byte = match self.data.get(self.pos) {
                Some(0xFF) if self.data.get(self.pos + 1) == Some(&0x00) => {
                    self.pos += 2;
                    0xFF
                }
                Some(0xFF) | None => {
                    self.padding += 8;
                    0
                }
                Some(&b) => {
                    self.pos += 1;
                    b
                }
            };
            self.buffer = (self.buffer << 8) | byte as u64;
            self.count += 8;
        }
    }

    fn peek(&mut self, n: u32) -> u32 {
        if self.count < n {
            self.fill();
        }
        ((self.buffer >> (self.count - n)) & ((1 << n) - 1)) as u32
    }

    fn consume(&mut self, n: u32) {
        self.count -= n;
        if self.count < self.padding {
            self.past_end = true;
        }
    }

    fn skip(&mut self, n: u32) {
        if n > 0 {
            self.peek(n);
            self.consume(n);
        }
    }

    /// A signed value of `n` bits (JPEG's EXTEND: a leading 0 bit means negative).
    fn value(&mut self, n: u32) -> i32 {
        if n == 0 {
            return 0;
        }
        let v = self.peek(n) as i32;
        self.consume(n);
        if v < 1 << (n - 1) {
            v - (1 << n) + 1
        } else {
            v
        }
    }

    fn symbol(&mut self, table: &Huffman) -> Option<u8> {
        let (len, symbol) = table.fast[self.peek(8) as usize];
        if len > 0 {
            self.consume(len as u32);
            return Some(symbol);
        }
        let word = self.peek(16) as i32;
        for len in 9..=16 {
            let code = word >> (16 - len);
            if code <= table.max_code[len] {
                self.consume(len as u32);
                return table.symbols.get((code + table.val_offset[len]) as usize).copied();
            }
        }
        None
    }

    /// Data bytes not yet walked before the next marker (less than one: only the padding
    /// bits of the last byte).
    fn bytes_left_before_marker(&self) -> usize {
        let mut n = (self.count.saturating_sub(self.padding) / 8) as usize;
        let mut i = self.pos;
        while i < self.data.len() {
            match (self.data[i], self.data.get(i + 1)) {
                (0xFF, Some(0x00)) => i += 2,
                (0xFF, _) => break,
                _ => i += 1,
            }
            n += 1;
        }
        n
    }

    /// At a restart point: the marker that comes next (None when data comes first), and the
    /// bits start over after it.
    fn restart(&mut self) -> Option<u8> {
        if self.bytes_left_before_marker() > 0 {
            return None;
        }
        let marker = *self.data.get(self.pos + 1)?;
        if !(0xD0..=0xD7).contains(&marker) || self.data[self.pos] != 0xFF {
            return None;
        }
        self.pos += 2;
        (self.buffer, self.count, self.padding) = (0, 0, 0);
        Some(marker)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn fixture(name: &str) -> Vec<u8> {
        std::fs::read(format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"))).unwrap()
    }

    pub(crate) const FIXTURES: [&str; 6] =
        ["apple.jpg", "astronaut-wide.jpg", "astronaut.jpg", "coffee.jpg", "fruits.jpg", "shelf.jpg"];

    #[test]
    fn block_brightness_is_the_picture_at_an_eighth_of_its_size() {
        use zune_jpeg::zune_core::{colorspace::ColorSpace, options::DecoderOptions};
        for name in FIXTURES {
            let jpeg = fixture(name);
            let blocks = block_brightness(&jpeg).unwrap().expect("a baseline JPEG");
            let options = DecoderOptions::default().jpeg_set_out_colorspace(ColorSpace::Luma);
            let luma = zune_jpeg::JpegDecoder::new_with_options(&jpeg, options).decode().unwrap();
            let (w, h) = frame_size(&jpeg).unwrap();
            assert!(blocks.len() >= (w as usize / 8) * (h as usize / 8), "{name}: a value per 8x8 block");
            // The mean brightness of the blocks is the picture's (blocks past the edge repeat it).
            let from_blocks = blocks.iter().map(|&b| b as f64 + 128.0).sum::<f64>() / blocks.len() as f64;
            let decoded = luma.iter().map(|&p| p as f64).sum::<f64>() / luma.len() as f64;
            assert!((from_blocks - decoded).abs() < 4.0, "{name}: {from_blocks:.1} against {decoded:.1}");
        }
        let mut cut = fixture("shelf.jpg");
        let half = cut.len() / 2;
        cut.truncate(half);
        cut.extend([0xFF, 0xD9]);
        assert!(block_brightness(&cut).unwrap_err().contains("damaged"));
    }

    /// Where the entropy-coded data starts and ends (before the end-of-image marker).
    pub(crate) fn scan(jpeg: &[u8]) -> (usize, usize) {
        let layout = Layout::read(jpeg).unwrap().expect("a baseline JPEG");
        (layout.data_start, jpeg.len() - 2)
    }

    /// `jpeg` with `n` bytes from `at` (a fraction of the scan) replaced by noise.
    pub(crate) fn with_noise(jpeg: &[u8], at: f64, n: usize, seed: u64) -> Vec<u8> {
        let (start, end) = scan(jpeg);
        let from = start + ((end - start) as f64 * at) as usize;
        let mut out = jpeg.to_vec();
        let mut x = seed;
        for b in out.iter_mut().take((from + n).min(end)).skip(from) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            *b = (x as u8).min(0xFE);
        }
        out
    }

    #[test]
    fn whole_jpegs_pass_in_every_sampling_and_with_restart_markers() {
        for name in FIXTURES {
            check(&fixture(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
        }
        let (w, h) = (203u16, 117u16);
        let rgb: Vec<u8> = (0..w as usize * h as usize * 3).map(|i| (i * 7 % 251) as u8).collect();
        for sampling in [
            jpeg_encoder::SamplingFactor::F_1_1,
            jpeg_encoder::SamplingFactor::F_2_2,
            jpeg_encoder::SamplingFactor::F_2_1,
        ] {
            for restart in [0, 3] {
                let mut jpeg = Vec::new();
                let mut encoder = jpeg_encoder::Encoder::new(&mut jpeg, 85);
                encoder.set_sampling_factor(sampling);
                if restart > 0 {
                    encoder.set_restart_interval(restart);
                }
                encoder.encode(&rgb, w, h, jpeg_encoder::ColorType::Rgb).unwrap();
                check(&jpeg).unwrap_or_else(|e| panic!("{sampling:?}, restart {restart}: {e}"));
            }
        }
        let luma = vec![128u8; w as usize * h as usize];
        let mut gray = Vec::new();
        jpeg_encoder::Encoder::new(&mut gray, 85).encode(&luma, w, h, jpeg_encoder::ColorType::Luma).unwrap();
        check(&gray).unwrap();
    }

    #[test]
    fn noise_in_the_scan_is_found() {
        let mut found = 0;
        let mut tried = 0;
        for name in FIXTURES {
            let jpeg = fixture(name);
            for (i, at) in [0.1, 0.3, 0.5, 0.7].into_iter().enumerate() {
                tried += 1;
                let bad = with_noise(&jpeg, at, 64, 1 + i as u64);
                if let Err(why) = check(&bad) {
                    assert!(why.starts_with("damaged:"), "{why}");
                    found += 1;
                }
            }
        }
        // 64 bytes of noise are hard to read as valid codes to the end: nearly all are found.
        assert!(found * 10 >= tried * 9, "{found} of {tried} damaged scans found");
    }

    #[test]
    fn a_scan_cut_short_and_closed_is_found() {
        for name in FIXTURES {
            let jpeg = fixture(name);
            let (start, end) = scan(&jpeg);
            let mut cut = jpeg[..start + (end - start) / 2].to_vec();
            cut.extend_from_slice(&[0xFF, 0xD9]);
            let why = check(&cut).unwrap_err();
            assert!(why.contains("ends before the image does"), "{name}: {why}");
        }
    }

    #[test]
    fn restart_markers_out_of_order_are_found() {
        let rgb = vec![90u8; 64 * 64 * 3];
        let mut jpeg = Vec::new();
        let mut encoder = jpeg_encoder::Encoder::new(&mut jpeg, 85);
        encoder.set_restart_interval(2);
        encoder.encode(&rgb, 64, 64, jpeg_encoder::ColorType::Rgb).unwrap();
        let first = jpeg.windows(2).position(|w| w[0] == 0xFF && (0xD0..=0xD7).contains(&w[1])).unwrap();
        jpeg[first + 1] = 0xD5;
        let why = check(&jpeg).unwrap_err();
        assert!(why.contains("where RST0 belongs"), "{why}");
    }
}
