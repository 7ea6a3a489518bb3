//! JPEG decode, whole or at a fraction of the frame's size (1/2, 1/4 or 1/8), through
//! libjpeg-turbo.
//!
//! A 300-416 pixel model takes a fraction of a 1280x720 frame's pixels. JPEG's inverse DCT
//! can produce each 8x8 block at 4x4, 2x2 or 1x1 directly, which skips most of the IDCT,
//! the upsampling and colour conversion of the pixels the resize would throw away.
//! libjpeg-turbo (Debian's libturbojpeg) does it with SIMD; zune-jpeg cannot scale, and the
//! pure-Rust `jpeg-decoder` at 1/2 was slower than zune-jpeg at full size (README, Benchmarks).
//! libjpeg-turbo also warns of damaged data as it decodes, which spares frames a walk of their
//! own (`scan_check`); whole, it decodes a 1280x720 frame a little faster than zune-jpeg.
//!
//! The one `unsafe` module of the crate: the FFI calls to TurboJPEG's 2.x C API.
#![allow(unsafe_code)]

use std::ffi::CStr;
use std::ptr::NonNull;

use turbojpeg_sys as tj;

/// The scale factors DCT scaling gives exactly (1/denominator), largest first.
const DENOMINATORS: [u32; 3] = [8, 4, 2];

/// The largest denominator (of 8, 4, 2, else 1) at which a `frame`-sized JPEG still decodes
/// to at least `needed` pixels each way: the model loses nothing the full decode would give it.
pub fn denominator_for(frame: (u32, u32), needed: (u32, u32)) -> u32 {
    DENOMINATORS.into_iter().find(|&d| scaled(frame.0, d) >= needed.0 && scaled(frame.1, d) >= needed.1).unwrap_or(1)
}

/// A side decoded at 1/`denominator` (libjpeg-turbo's TJSCALED: rounded up).
pub fn scaled(side: u32, denominator: u32) -> u32 {
    side.div_ceil(denominator)
}

/// RGB pixels of a JPEG decoded at 1/`denominator` of its size.
#[derive(Debug)]
pub struct ScaledPicture {
    pub rgb: Vec<u8>,
    pub width: u32,
    pub height: u32,
}

/// A TurboJPEG decompressor (one per worker: it keeps libjpeg's state between frames).
#[derive(Debug)]
pub struct ScaledDecoder {
    handle: NonNull<std::ffi::c_void>,
}

// A TurboJPEG handle is not tied to the thread that made it; `&mut self` keeps it to one
// user at a time.
unsafe impl Send for ScaledDecoder {}

impl ScaledDecoder {
    pub fn new() -> Result<ScaledDecoder, String> {
        // SAFETY: no arguments; a null return is handled.
        let handle = unsafe { tj::tjInitDecompress() };
        NonNull::new(handle)
            .map(|handle| ScaledDecoder { handle })
            .ok_or_else(|| "libjpeg-turbo could not make a decompressor (out of memory?)".to_string())
    }

    /// Decodes a whole baseline or progressive `jpeg` (its size already checked against the
    /// limits) at 1/`denominator`, as RGB. A warning (damaged data libjpeg decoded anyway) is
    /// an error too: the caller then decodes the frame as it would without scaling.
    pub fn decode(&mut self, jpeg: &[u8], denominator: u32) -> Result<ScaledPicture, String> {
        self.decode_into(jpeg, denominator, Vec::new())
    }

    /// As [`ScaledDecoder::decode`], into `buffer` (the last frame's pixels, say): a buffer of
    /// the frame's size is written over as it is, with no allocation and no zeroing.
    pub fn decode_into(&mut self, jpeg: &[u8], denominator: u32, buffer: Vec<u8>) -> Result<ScaledPicture, String> {
        let (mut width, mut height, mut subsampling, mut colorspace) = (0, 0, 0, 0);
        // SAFETY: the buffer and its length come from one slice; the out-pointers are locals.
        let status = unsafe {
            tj::tjDecompressHeader3(
                self.handle.as_ptr(),
                jpeg.as_ptr(),
                jpeg.len() as _,
                &mut width,
                &mut height,
                &mut subsampling,
                &mut colorspace,
            )
        };
        if status != 0 {
            return Err(self.error());
        }
        if width <= 0 || height <= 0 {
            return Err(format!("the JPEG header gives a size of {width}x{height}"));
        }
        let (width, height) = (scaled(width as u32, denominator), scaled(height as u32, denominator));
        let mut rgb = buffer;
        // Only what the buffer lacks is zeroed; TurboJPEG writes every byte of it.
        rgb.resize(width as usize * height as usize * 3, 0);
        // Rows are packed (pitch = width * 3); TurboJPEG picks the largest scale that fits in
        // width x height, which is 1/denominator exactly as `scaled` rounds as it does.
        // SAFETY: `rgb` holds height rows of width * 3 bytes, the most TurboJPEG writes for the
        // size it is given; the input slice outlives the call.
        let status = unsafe {
            tj::tjDecompress2(
                self.handle.as_ptr(),
                jpeg.as_ptr(),
                jpeg.len() as _,
                rgb.as_mut_ptr(),
                width as i32,
                width as i32 * 3,
                height as i32,
                tj::TJPF_TJPF_RGB,
                // A hostile progressive JPEG with thousands of scans costs minutes: stop at 500.
                tj::TJFLAG_LIMITSCANS as i32,
            )
        };
        if status != 0 {
            return Err(self.error());
        }
        Ok(ScaledPicture { rgb, width, height })
    }

    /// The decompressor's last error, as libjpeg-turbo words it.
    fn error(&self) -> String {
        // SAFETY: the handle is live; TurboJPEG returns a NUL-terminated string it owns,
        // copied before the next call.
        let text = unsafe { CStr::from_ptr(tj::tjGetErrorStr2(self.handle.as_ptr())) };
        text.to_string_lossy().into_owned()
    }
}

impl Drop for ScaledDecoder {
    fn drop(&mut self) {
        // SAFETY: the handle is live and dropped once.
        unsafe { tj::tjDestroy(self.handle.as_ptr()) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fruits() -> Vec<u8> {
        std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/fruits.jpg")).unwrap()
    }

    #[test]
    fn the_denominator_keeps_every_pixel_the_model_takes() {
        // 1280x720 for SSD (300x300 stretched) and NanoDet (416 wide, letterboxed: 416x234).
        assert_eq!(denominator_for((1280, 720), (300, 300)), 2);
        assert_eq!(denominator_for((1280, 720), (416, 234)), 2);
        assert_eq!(denominator_for((1920, 1080), (320, 180)), 4);
        assert_eq!(denominator_for((3840, 2160), (300, 169)), 8);
        assert_eq!(denominator_for((640, 360), (416, 234)), 1);
    }

    #[test]
    fn a_frame_decodes_at_half_size_close_to_a_full_decode_shrunk() {
        let jpeg = fruits();
        let mut decoder = ScaledDecoder::new().unwrap();
        let full = decoder.decode(&jpeg, 1).unwrap();
        let half = decoder.decode(&jpeg, 2).unwrap();
        assert_eq!((half.width, half.height), (full.width.div_ceil(2), full.height.div_ceil(2)));
        // Each half-size pixel is about the mean of its 2x2 block of the full decode.
        let (fw, hw) = (full.width as usize, half.width as usize);
        let mut error = 0u64;
        let mut count = 0u64;
        for y in 0..(full.height as usize / 2) {
            for x in 0..(fw / 2) {
                for c in 0..3 {
                    let at = |xx: usize, yy: usize| full.rgb[(yy * fw + xx) * 3 + c] as i32;
                    let mean =
                        (at(2 * x, 2 * y) + at(2 * x + 1, 2 * y) + at(2 * x, 2 * y + 1) + at(2 * x + 1, 2 * y + 1)) / 4;
                    error += mean.abs_diff(half.rgb[(y * hw + x) * 3 + c] as i32) as u64;
                    count += 1;
                }
            }
        }
        assert!((error as f64 / count as f64) < 4.0, "mean error {}", error as f64 / count as f64);
    }

    #[test]
    fn not_a_jpeg_is_an_error_in_libjpeg_turbos_words() {
        let mut decoder = ScaledDecoder::new().unwrap();
        let err = decoder.decode(b"\xFF\xD8\xFF\xE0 not really", 2).unwrap_err();
        assert!(!err.is_empty());
    }
}
