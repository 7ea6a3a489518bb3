//! JPEG frame -> the model's input picture: decode (bounded), cut letterbox bars, resize.

use fast_image_resize::images::{Image, ImageRef};
use fast_image_resize::{FilterType, PixelType, ResizeAlg, ResizeOptions, Resizer};
use zune_jpeg::zune_core::colorspace::ColorSpace;
use zune_jpeg::zune_core::options::DecoderOptions;
use zune_jpeg::JpegDecoder;

use vitrine_schemas::spec::TileGrid;

use crate::scaled_decode::{denominator_for, scaled, ScaledDecoder};
use crate::ModelError;

/// Bounds on what a frame may cost to decode.
#[derive(Clone, Copy, Debug)]
pub struct DecodeLimits {
    pub max_bytes: usize,
    pub max_side: u32,
    pub crop_bars: bool,
    /// Refuse a frame whose compressed data is damaged (decoders turn it into noise without a
    /// word): libjpeg-turbo's warnings as it decodes, else a walk of the data before decoding.
    pub check_data: bool,
    /// Decode frames larger than the model takes at 1/2, 1/4 or 1/8 of their size (libjpeg-turbo's
    /// DCT scaling), never below what the model takes. Off: decoded whole.
    pub at_model_scale: bool,
}

impl Default for DecodeLimits {
    fn default() -> Self {
        DecodeLimits { max_bytes: 16 << 20, max_side: 8192, crop_bars: true, check_data: true, at_model_scale: true }
    }
}

/// The part of the frame that was given to the model, in frame pixels.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Crop {
    pub x: u32,
    pub y: u32,
    pub width: u32,
    pub height: u32,
}

/// How the picture is fitted into the model's input.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Fit {
    /// Stretched to fill the input (the default SSD was trained so).
    #[default]
    Stretch,
    /// Scaled to fit keeping its aspect, centred on grey (114) padding (Ultralytics YOLO).
    Letterbox,
}

/// The picture a model takes: its size and how frames are fitted into it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InputSpec {
    pub width: u32,
    pub height: u32,
    pub fit: Fit,
}

/// Grey of the letterbox padding, as Ultralytics pads.
const PAD: u8 = 114;

/// A frame ready for the model: RGB pixels of `crop`, resized to `size`.
#[derive(Clone, Debug)]
pub struct Prepared {
    /// Size of the decoded frame.
    pub frame_width: u32,
    pub frame_height: u32,
    pub crop: Crop,
    /// Size of `pixels` (the model's input size).
    pub width: u32,
    pub height: u32,
    /// Where in `pixels` the picture is (all of it, unless letterboxed).
    pub content: Crop,
    /// Interleaved RGB, row by row.
    pub pixels: Vec<u8>,
}

impl Prepared {
    /// Maps a box normalised to the model's input back to one normalised to the whole frame.
    pub fn to_frame(&self, x0: f32, y0: f32, x1: f32, y1: f32) -> vitrine_schemas::BBox {
        let (fw, fh) = (self.frame_width as f32, self.frame_height as f32);
        let (cx, cy, cw, ch) =
            (self.crop.x as f32, self.crop.y as f32, self.crop.width as f32, self.crop.height as f32);
        // Model input -> the picture inside it (letterbox padding off).
        let (w, h, c) = (self.width as f32, self.height as f32, self.content);
        let in_x = |x: f32| (x * w - c.x as f32) / c.width as f32;
        let in_y = |y: f32| (y * h - c.y as f32) / c.height as f32;
        let (x0, y0, x1, y1) = (in_x(x0), in_y(y0), in_x(x1), in_y(y1));
        let clamp = |v: f32| v.clamp(0.0, 1.0);
        vitrine_schemas::BBox {
            x0: clamp((cx + x0 * cw) / fw),
            y0: clamp((cy + y0 * ch) / fh),
            x1: clamp((cx + x1 * cw) / fw),
            y1: clamp((cy + y1 * ch) / fh),
        }
    }
}

/// A decoded frame: its pixels (at 1/`denominator` of the frame's size) and the picture
/// inside any bars, in frame pixels.
#[derive(Debug)]
struct Decoded {
    rgb: Vec<u8>,
    /// Size of `rgb`.
    width: u32,
    height: u32,
    frame_width: u32,
    frame_height: u32,
    denominator: u32,
    crop: Crop,
}

/// Reusable decode + resize state (one per worker: the resizer keeps its buffers, the scaled
/// decoder libjpeg's state).
#[derive(Debug)]
pub struct Preparer {
    limits: DecodeLimits,
    resizer: Resizer,
    /// libjpeg-turbo, which decodes frames (at the model's scale when `at_model_scale`) and
    /// warns of damaged data as it does; none when it could not make a decompressor.
    scaled: Option<ScaledDecoder>,
    /// The share of the last frame's width and height inside its bars.
    last_share: (f64, f64),
    /// The last frame's decoded pixels, decoded over by the next frame.
    spare: Vec<u8>,
    /// What `spare` holds: the last picture's decoded size, its size in frame pixels and scale.
    last: Option<LastDecoded>,
}

/// The size and scale of the pixels a [`Preparer`] decoded last.
#[derive(Clone, Copy, Debug)]
struct LastDecoded {
    width: u32,
    height: u32,
    frame_width: u32,
    frame_height: u32,
    denominator: u32,
}

impl Preparer {
    pub fn new(limits: DecodeLimits) -> Preparer {
        let scaled = ScaledDecoder::new()
            .map_err(|why| {
                tracing::warn!(why, "frames are decoded by zune-jpeg at full size: no libjpeg-turbo decoder")
            })
            .ok();
        Preparer { limits, resizer: Resizer::new(), scaled, last_share: (1.0, 1.0), spare: Vec::new(), last: None }
    }

    /// Decodes `jpeg` and fits it (bars cut if configured) into the model's input.
    pub fn prepare(&mut self, jpeg: &[u8], input: InputSpec) -> Result<Prepared, ModelError> {
        self.prepare_pictures(jpeg, input, |_| None, false).map(|mut pictures| pictures.remove(0))
    }

    /// The whole picture, then the tiles `tiles_of` asks for, seeing the whole (grid, overlap;
    /// none: no tiles), as [`Preparer::prepare_tiled`].
    /// `data_checked`: the compressed data was walked already ([`crate::block_brightness`]),
    /// so decode does not walk it again.
    pub fn prepare_pictures(
        &mut self,
        jpeg: &[u8],
        input: InputSpec,
        tiles_of: impl FnOnce(&Prepared) -> Option<(TileGrid, f32)>,
        data_checked: bool,
    ) -> Result<Vec<Prepared>, ModelError> {
        self.last = None;
        let mut decoded = self.decode(jpeg, self.limits.check_data && !data_checked, input)?;
        let mut pictures = vec![self.fit(&decoded, decoded.crop, input)?];
        if let Some((grid, overlap)) = tiles_of(&pictures[0]) {
            let tiles = tiles(decoded.crop, grid, overlap);
            // A tile is a fraction of the frame: it needs the pixels a smaller scale gives.
            let wanted =
                tiles.first().map_or(1, |t| self.denominator(decoded.frame_width, decoded.frame_height, *t, input));
            if wanted < decoded.denominator {
                let crop = decoded.crop;
                decoded = self.decode_at(jpeg, wanted, decoded.frame_width, decoded.frame_height)?;
                decoded.crop = crop;
            }
            for tile in tiles {
                pictures.push(self.fit(&decoded, tile, input)?);
            }
        }
        self.last = Some(LastDecoded {
            width: decoded.width,
            height: decoded.height,
            frame_width: decoded.frame_width,
            frame_height: decoded.frame_height,
            denominator: decoded.denominator,
        });
        self.spare = decoded.rgb;
        Ok(pictures)
    }

    /// `region` (frame pixels) of the picture prepared last, stretched to `width` x `height`:
    /// the crop of a detection for an embedder, with no second decode. None before any picture,
    /// or for a region outside it.
    pub fn last_region(&mut self, region: Crop, width: u32, height: u32) -> Option<Prepared> {
        let last = self.last?;
        if region.width == 0 || region.height == 0 || region.x >= last.frame_width || region.y >= last.frame_height {
            return None;
        }
        let decoded = Decoded {
            rgb: std::mem::take(&mut self.spare),
            width: last.width,
            height: last.height,
            frame_width: last.frame_width,
            frame_height: last.frame_height,
            denominator: last.denominator,
            crop: region,
        };
        let input = InputSpec { width, height, fit: Fit::Stretch };
        let fitted = self.fit(&decoded, region, input).ok();
        self.spare = decoded.rgb;
        fitted
    }

    /// Like [`Preparer::prepare`], plus `grid`'s tiles of the picture overlapping by `overlap`
    /// (a fraction of a tile), each fitted to the model's input on its own: small objects come
    /// out larger in a tile. The whole picture comes first. One decode for all.
    pub fn prepare_tiled(
        &mut self,
        jpeg: &[u8],
        input: InputSpec,
        grid: TileGrid,
        overlap: f32,
    ) -> Result<Vec<Prepared>, ModelError> {
        self.prepare_pictures(jpeg, input, |_| Some((grid, overlap)), false)
    }

    /// Decodes within the limits, at the smallest scale that still gives the model every pixel
    /// it takes of the picture inside any bars.
    fn decode(&mut self, jpeg: &[u8], check_data: bool, input: InputSpec) -> Result<Decoded, ModelError> {
        let limits = self.limits;
        if jpeg.len() > limits.max_bytes {
            return Err(ModelError::TooLarge { bytes: jpeg.len(), limit: limits.max_bytes });
        }
        if let Some(what) = not_a_jpeg(jpeg) {
            return Err(ModelError::BadJpeg(what));
        }
        // Bytes after the end of the image (padded uploads, stream captures) are not the image's.
        let Some(end) = image_end(jpeg) else {
            return Err(ModelError::BadJpeg(
                "truncated: the data ends before the JPEG end-of-image marker (FF D9); was the frame cut short in transfer?".into(),
            ));
        };
        let jpeg = &jpeg[..end];
        if let Some((width, height)) = crate::scan_check::frame_size(jpeg) {
            if width.max(height) > limits.max_side {
                return Err(ModelError::TooManyPixels { width, height, limit: limits.max_side });
            }
        }
        let mut decoder = zune_decoder(jpeg, limits);
        guarded(|| decoder.decode_headers())?.map_err(|e| header_error(e, limits))?;
        let info = decoder.info().ok_or_else(|| ModelError::BadJpeg("no image header".into()))?;
        let (fw, fh) = (info.width as u32, info.height as u32);
        if fw == 0 || fh == 0 {
            return Err(ModelError::BadJpeg(format!("image is {fw}x{fh}")));
        }
        // After the header's limits (a decompression bomb is refused for its size, unwalked).
        // libjpeg-turbo warns of damaged data as it decodes (a bad code, data cut short or
        // running on, restart markers out of order), and a warning fails its decode: a frame it
        // decodes needs no walk of its own. Any other frame is walked before it is decoded.
        let mut unchecked = check_data;
        let check_once = |unchecked: &mut bool| {
            if std::mem::take(unchecked) {
                crate::scan_check::check(jpeg).map_err(ModelError::BadJpeg)
            } else {
                Ok(())
            }
        };
        // The bars are known after the decode: expect those of the last frame (a stream's bars
        // rarely change), so the picture inside them still has every pixel the model takes.
        let (share_w, share_h) = self.last_share;
        let expected = Crop {
            x: 0,
            y: 0,
            width: ((fw as f64 * share_w).floor() as u32).clamp(1, fw),
            height: ((fh as f64 * share_h).floor() as u32).clamp(1, fh),
        };
        let mut denominator = self.denominator(fw, fh, expected, input);
        let decoded = 'decoded: {
            if denominator > 1 {
                match self.decode_scaled(jpeg, denominator, fw, fh) {
                    Some(mut decoded) => {
                        unchecked = false;
                        decoded.crop = self.bars(&decoded);
                        // More was cut than expected, leaving the model too few pixels: again.
                        denominator = self.denominator(fw, fh, decoded.crop, input);
                        if denominator >= decoded.denominator {
                            break 'decoded decoded;
                        }
                    }
                    None => {
                        check_once(&mut unchecked)?;
                        let mut decoded = decode_whole(decoder, fw, fh)?;
                        decoded.crop = self.bars(&decoded);
                        break 'decoded decoded;
                    }
                }
            }
            let mut decoded = match self.decode_scaled(jpeg, denominator, fw, fh) {
                Some(decoded) => decoded,
                None => {
                    check_once(&mut unchecked)?;
                    decode_whole(decoder, fw, fh)?
                }
            };
            decoded.crop = self.bars(&decoded);
            decoded
        };
        let crop = decoded.crop;
        self.last_share = (crop.width as f64 / fw as f64, crop.height as f64 / fh as f64);
        Ok(decoded)
    }

    /// Decodes again (the frame passed its checks already) at 1/`denominator`.
    fn decode_at(&mut self, jpeg: &[u8], denominator: u32, fw: u32, fh: u32) -> Result<Decoded, ModelError> {
        let jpeg = &jpeg[..image_end(jpeg).unwrap_or(jpeg.len())];
        if let Some(decoded) = self.decode_scaled(jpeg, denominator, fw, fh) {
            return Ok(decoded);
        }
        decode_whole(zune_decoder(jpeg, self.limits), fw, fh)
    }

    /// libjpeg-turbo's decode at 1/`denominator` (1: whole); none when it is off or fails on
    /// this frame (zune-jpeg then decodes it whole and words any error).
    fn decode_scaled(&mut self, jpeg: &[u8], denominator: u32, fw: u32, fh: u32) -> Option<Decoded> {
        let spare = std::mem::take(&mut self.spare);
        let picture = self.scaled.as_mut()?.decode_into(jpeg, denominator, spare).ok()?;
        if (picture.width, picture.height) != (scaled(fw, denominator), scaled(fh, denominator)) {
            return None;
        }
        let whole = Crop { x: 0, y: 0, width: fw, height: fh };
        Some(Decoded {
            rgb: picture.rgb,
            width: picture.width,
            height: picture.height,
            frame_width: fw,
            frame_height: fh,
            denominator,
            crop: whole,
        })
    }

    /// The denominator of the scale at which `crop` of an `fw` x `fh` frame still has every
    /// pixel the model takes of it (1 when scaled decode is off).
    fn denominator(&self, fw: u32, fh: u32, crop: Crop, input: InputSpec) -> u32 {
        if self.scaled.is_none() || !self.limits.at_model_scale {
            return 1;
        }
        let (cw, ch) = taken(input, crop);
        // The crop at 1/d is crop/d pixels: scale the frame by what the crop leaves out.
        let need_w = (cw as u64 * fw as u64).div_ceil(crop.width.max(1) as u64) as u32;
        let need_h = (ch as u64 * fh as u64).div_ceil(crop.height.max(1) as u64) as u32;
        denominator_for((fw, fh), (need_w, need_h))
    }

    /// The picture inside any bars, in frame pixels.
    fn bars(&self, decoded: &Decoded) -> Crop {
        let (fw, fh, d) = (decoded.frame_width, decoded.frame_height, decoded.denominator);
        if !self.limits.crop_bars {
            return Crop { x: 0, y: 0, width: fw, height: fh };
        }
        let c = find_bars(&decoded.rgb, decoded.width, decoded.height);
        let (x, y) = ((c.x * d).min(fw - 1), (c.y * d).min(fh - 1));
        let width = if c.x + c.width == decoded.width { fw - x } else { (c.width * d).min(fw - x) };
        let height = if c.y + c.height == decoded.height { fh - y } else { (c.height * d).min(fh - y) };
        Crop { x, y, width, height }
    }

    /// Resizes the `crop` region (frame pixels) of a decoded frame into the model's input.
    fn fit(&mut self, decoded: &Decoded, crop: Crop, input: InputSpec) -> Result<Prepared, ModelError> {
        let (width, height) = (input.width, input.height);
        let content = match input.fit {
            Fit::Stretch => Crop { x: 0, y: 0, width, height },
            Fit::Letterbox => {
                let (cw, ch) = taken(input, crop);
                Crop { x: (width - cw) / 2, y: (height - ch) / 2, width: cw, height: ch }
            }
        };
        let src = ImageRef::new(decoded.width, decoded.height, &decoded.rgb, PixelType::U8x3)
            .map_err(|e| ModelError::Resize(e.to_string()))?;
        let mut dst = Image::new(content.width, content.height, PixelType::U8x3);
        // Frame pixels -> decoded pixels.
        let d = decoded.denominator as f64;
        let options = ResizeOptions::new().resize_alg(ResizeAlg::Convolution(FilterType::Bilinear)).crop(
            crop.x as f64 / d,
            crop.y as f64 / d,
            (crop.width as f64 / d).min(decoded.width as f64 - crop.x as f64 / d),
            (crop.height as f64 / d).min(decoded.height as f64 - crop.y as f64 / d),
        );
        self.resizer.resize(&src, &mut dst, &options).map_err(|e| ModelError::Resize(e.to_string()))?;
        let pixels = if content.width == width && content.height == height {
            dst.into_vec()
        } else {
            let mut canvas = vec![PAD; width as usize * height as usize * 3];
            let row = content.width as usize * 3;
            for (y, line) in dst.buffer().chunks_exact(row).enumerate() {
                let at = ((content.y as usize + y) * width as usize + content.x as usize) * 3;
                canvas[at..at + row].copy_from_slice(line);
            }
            canvas
        };
        let (frame_width, frame_height) = (decoded.frame_width, decoded.frame_height);
        Ok(Prepared { frame_width, frame_height, crop, width, height, content, pixels })
    }
}

/// How many pixels each way the model takes of `crop`: all of its input when stretched,
/// the crop scaled to fit keeping its aspect when letterboxed.
fn taken(input: InputSpec, crop: Crop) -> (u32, u32) {
    let (width, height) = (input.width, input.height);
    match input.fit {
        Fit::Stretch => (width, height),
        Fit::Letterbox => {
            let r = (width as f64 / crop.width as f64).min(height as f64 / crop.height as f64);
            let cw = ((crop.width as f64 * r).round() as u32).clamp(1, width);
            let ch = ((crop.height as f64 * r).round() as u32).clamp(1, height);
            (cw, ch)
        }
    }
}

/// zune-jpeg, strict, RGB out, within `limits.max_side`.
fn zune_decoder(jpeg: &[u8], limits: DecodeLimits) -> JpegDecoder<&[u8]> {
    let options = DecoderOptions::default()
        .jpeg_set_out_colorspace(ColorSpace::RGB)
        .set_max_width(limits.max_side as usize)
        .set_max_height(limits.max_side as usize)
        .set_strict_mode(true);
    JpegDecoder::new_with_options(jpeg, options)
}

/// zune-jpeg's full-size decode of a frame.
fn decode_whole(mut decoder: JpegDecoder<&[u8]>, fw: u32, fh: u32) -> Result<Decoded, ModelError> {
    let mut rgb = guarded(|| decoder.decode())?.map_err(|e| ModelError::BadJpeg(e.to_string()))?;
    let pixels = fw as usize * fh as usize;
    if rgb.len() == pixels {
        // A grayscale (one-component) JPEG comes out as luma: the model takes three channels.
        rgb = rgb.iter().flat_map(|&y| [y, y, y]).collect();
    }
    if rgb.len() < pixels * 3 {
        return Err(ModelError::BadJpeg("decoded fewer pixels than the header promises".into()));
    }
    let crop = Crop { x: 0, y: 0, width: fw, height: fh };
    Ok(Decoded { rgb, width: fw, height: fh, frame_width: fw, frame_height: fh, denominator: 1, crop })
}

/// `grid`'s tiles covering `area` (rows top to bottom, each left to right), each grown by
/// `overlap` of its size (within `area`).
pub fn tiles(area: Crop, grid: TileGrid, overlap: f32) -> Vec<Crop> {
    if grid.count() == 0 {
        return Vec::new();
    }
    let (tw, th) = (area.width as f32 / grid.columns as f32, area.height as f32 / grid.rows as f32);
    let (gx, gy) = (tw * overlap / 2.0, th * overlap / 2.0);
    let mut out = Vec::new();
    for row in 0..grid.rows {
        for col in 0..grid.columns {
            let x0 = (area.x as f32 + col as f32 * tw - gx).max(area.x as f32);
            let y0 = (area.y as f32 + row as f32 * th - gy).max(area.y as f32);
            let x1 = (area.x as f32 + (col + 1) as f32 * tw + gx).min((area.x + area.width) as f32);
            let y1 = (area.y as f32 + (row + 1) as f32 * th + gy).min((area.y + area.height) as f32);
            let (x, y) = (x0.round() as u32, y0.round() as u32);
            out.push(Crop { x, y, width: (x1.round() as u32 - x).max(1), height: (y1.round() as u32 - y).max(1) });
        }
    }
    out
}

/// Whether the JPEG's end-of-image marker is at its end (a few padding bytes allowed).
/// Entropy-coded data cannot contain FF D9, so a truncated image has none near its end.
/// Where the image ends: just after its last end-of-image marker (FF D9); none when the data
/// has none (cut short).
fn image_end(jpeg: &[u8]) -> Option<usize> {
    jpeg.windows(2).rposition(|w| w == [0xFF, 0xD9]).map(|at| at + 2)
}

/// What the bytes are when they are not a JPEG (none when they start like one), for the
/// reason a frame is refused.
fn not_a_jpeg(bytes: &[u8]) -> Option<String> {
    const PNG: &[u8] = b"\x89PNG\r\n\x1a\n";
    if bytes.starts_with(&[0xFF, 0xD8, 0xFF]) {
        return None;
    }
    let what = if bytes.is_empty() {
        "empty: the frame has no bytes".to_string()
    } else if bytes.starts_with(PNG) {
        "a PNG image, not a JPEG: frames must be JPEG (vitrine sample encodes them)".to_string()
    } else if bytes.starts_with(b"GIF87a") || bytes.starts_with(b"GIF89a") {
        "a GIF image, not a JPEG: frames must be JPEG".to_string()
    } else if bytes.starts_with(b"RIFF") && bytes.get(8..12) == Some(b"WEBP") {
        "a WebP image, not a JPEG: frames must be JPEG".to_string()
    } else if let Ok(text) = std::str::from_utf8(&bytes[..bytes.len().min(512)]) {
        let start = text.trim_start().to_ascii_lowercase();
        if start.starts_with("<!doctype html") || start.starts_with("<html") {
            "an HTML page, not an image: is the frame's source an error page?".to_string()
        } else {
            format!("text, not an image (it starts with {:?})", text.chars().take(24).collect::<String>())
        }
    } else {
        format!(
            "not an image: no JPEG start-of-image marker (FF D8 FF) at the start, but {}",
            bytes.iter().take(4).map(|b| format!("{b:02X}")).collect::<Vec<_>>().join(" ")
        )
    };
    Some(what)
}

fn header_error(e: zune_jpeg::errors::DecodeErrors, limits: DecodeLimits) -> ModelError {
    let text = e.to_string();
    if text.contains("larger than") || text.contains("too large") || text.contains("Too large") {
        ModelError::BadJpeg(format!("{text} (decode.max_side is {})", limits.max_side))
    } else {
        ModelError::BadJpeg(text)
    }
}

/// Runs the JPEG decoder so that a panic in it (a bug on some hostile input; fuzzing found
/// zune-jpeg's debug assertions failing) refuses the frame instead of ending the run.
fn guarded<T>(decode: impl FnOnce() -> T) -> Result<T, ModelError> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(decode)).map_err(|panic| {
        let why = panic
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| panic.downcast_ref::<&str>().copied())
            .unwrap_or("no message");
        ModelError::BadJpeg(format!("the JPEG decoder failed on this frame ({why}); the frame is refused"))
    })
}

/// One-shot [`Preparer::prepare`], stretching to `width` x `height`.
pub fn prepare(jpeg: &[u8], limits: DecodeLimits, width: u32, height: u32) -> Result<Prepared, ModelError> {
    Preparer::new(limits).prepare(jpeg, InputSpec { width, height, fit: Fit::Stretch })
}

/// Finds uniform bars (letterbox top/bottom, pillarbox left/right) around the picture.
///
/// A row or column belongs to a bar while every sampled pixel in it is within a small
/// tolerance of the frame's corner colour. At most 45% of a side is cut, and nothing is cut
/// from a frame that is uniform all over, nor from one with "bars" on all four sides: that is
/// a product on a plain background, and cutting it out would show the model nothing but the
/// product, which it then misreads (a tennis ball on grey, cut out, read as an apple).
pub fn find_bars(rgb: &[u8], width: u32, height: u32) -> Crop {
    const TOLERANCE: i32 = 10;
    let (w, h) = (width as usize, height as usize);
    let px = |x: usize, y: usize| {
        let i = (y * w + x) * 3;
        [rgb[i] as i32, rgb[i + 1] as i32, rgb[i + 2] as i32]
    };
    let bar = px(0, 0);
    let near = |p: [i32; 3]| (0..3).all(|c| (p[c] - bar[c]).abs() <= TOLERANCE);
    let step_x = (w / 64).max(1);
    let step_y = (h / 64).max(1);
    let row_is_bar = |y: usize| (0..w).step_by(step_x).all(|x| near(px(x, y)));
    let col_is_bar = |x: usize| (0..h).step_by(step_y).all(|y| near(px(x, y)));
    let max_rows = h * 45 / 100;
    let max_cols = w * 45 / 100;
    // Bars on a side and on the top or bottom both: no letterbox (a plain backdrop). Settled
    // on the edges alone, before counting rows (a backdrop that fills the top rows cost 90 µs
    // a frame of the sample stream at 1/2 when counted).
    let (rows_at_edges, cols_at_edges) = (row_is_bar(0) || row_is_bar(h - 1), col_is_bar(0) || col_is_bar(w - 1));
    if rows_at_edges == cols_at_edges {
        return Crop { x: 0, y: 0, width, height };
    }
    let top = (0..max_rows).take_while(|&y| row_is_bar(y)).count();
    let bottom = (0..max_rows).take_while(|&i| row_is_bar(h - 1 - i)).count();
    let left = (0..max_cols).take_while(|&x| col_is_bar(x)).count();
    let right = (0..max_cols).take_while(|&i| col_is_bar(w - 1 - i)).count();
    if top == max_rows || left == max_cols {
        // Uniform frame (e.g. a black screen between shots): nothing to cut.
        return Crop { x: 0, y: 0, width, height };
    }
    if top + bottom > 0 && left + right > 0 {
        return Crop { x: 0, y: 0, width, height };
    }
    Crop { x: left as u32, y: top as u32, width: (w - left - right) as u32, height: (h - top - bottom) as u32 }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A model input as large as the frame: decoded at full size.
    fn whole_size(width: u32, height: u32) -> InputSpec {
        InputSpec { width, height, fit: Fit::Stretch }
    }

    fn fruits() -> Vec<u8> {
        std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/fruits.jpg")).unwrap()
    }

    fn refusal(bytes: &[u8]) -> String {
        match prepare(bytes, DecodeLimits::default(), 64, 64) {
            Err(ModelError::BadJpeg(why)) => why,
            other => panic!("not refused as a bad JPEG: {:?}", other.map(|p| p.frame_width)),
        }
    }

    #[test]
    fn a_grayscale_jpeg_is_expanded_to_three_channels() {
        let (w, h) = (96u16, 64u16);
        let luma: Vec<u8> = (0..w as usize * h as usize).map(|i| (i % w as usize * 255 / w as usize) as u8).collect();
        let mut jpeg = Vec::new();
        jpeg_encoder::Encoder::new(&mut jpeg, 90).encode(&luma, w, h, jpeg_encoder::ColorType::Luma).unwrap();
        let limits = DecodeLimits { crop_bars: false, ..DecodeLimits::default() };
        let decoded = Preparer::new(limits).decode(&jpeg, true, whole_size(96, 64)).unwrap();
        let rgb = decoded.rgb;
        assert_eq!((decoded.frame_width, decoded.frame_height, rgb.len()), (96, 64, 96 * 64 * 3));
        assert!(rgb.chunks(3).all(|p| p[0] == p[1] && p[1] == p[2]), "gray stays gray");
        assert!(rgb.chunks(3).zip(&luma).all(|(p, y)| p[0].abs_diff(*y) <= 8), "the picture is the picture");
    }

    /// A 1280x720 frame: a picture of `width` pixels wide, centred between dark bars.
    fn pillarboxed_jpeg(width: usize) -> Vec<u8> {
        let rgb = frame(1280, 720, ((1280 - width) / 2, 0, (1280 + width) / 2, 720));
        let mut jpeg = Vec::new();
        jpeg_encoder::Encoder::new(&mut jpeg, 90).encode(&rgb, 1280, 720, jpeg_encoder::ColorType::Rgb).unwrap();
        jpeg
    }

    fn mean_difference(a: &[u8], b: &[u8]) -> f64 {
        assert_eq!(a.len(), b.len());
        a.iter().zip(b).map(|(x, y)| x.abs_diff(*y) as f64).sum::<f64>() / a.len() as f64
    }

    #[test]
    fn a_frame_is_decoded_at_the_models_scale_and_the_model_sees_the_same_picture() {
        let ssd = InputSpec { width: 300, height: 300, fit: Fit::Stretch };
        let jpeg = pillarboxed_jpeg(1280);
        let decoded = Preparer::new(DecodeLimits::default()).decode(&jpeg, true, ssd).unwrap();
        assert_eq!((decoded.width, decoded.height, decoded.denominator), (640, 360, 2));
        let full = DecodeLimits { at_model_scale: false, ..DecodeLimits::default() };
        let scaled = Preparer::new(DecodeLimits::default()).prepare(&jpeg, ssd).unwrap();
        let whole = Preparer::new(full).prepare(&jpeg, ssd).unwrap();
        assert_eq!(
            (scaled.frame_width, scaled.frame_height, scaled.crop),
            (whole.frame_width, whole.frame_height, whole.crop)
        );
        let off = mean_difference(&scaled.pixels, &whole.pixels);
        assert!(off < 3.0, "the model's input moved by {off} levels a channel on average");
    }

    #[test]
    fn bars_that_leave_a_narrow_picture_get_a_decode_with_its_pixels() {
        let ssd = InputSpec { width: 300, height: 300, fit: Fit::Stretch };
        // 400 pixels wide inside the bars: at 1/2 it would be 200, less than the model's 300.
        let jpeg = pillarboxed_jpeg(400);
        let decoded = Preparer::new(DecodeLimits::default()).decode(&jpeg, true, ssd).unwrap();
        assert_eq!(decoded.denominator, 1);
        assert_eq!(decoded.crop, Crop { x: 440, y: 0, width: 400, height: 720 });
        // 800 wide: 400 at 1/2 is enough.
        let decoded = Preparer::new(DecodeLimits::default()).decode(&pillarboxed_jpeg(800), true, ssd).unwrap();
        assert_eq!(decoded.denominator, 2);
        assert_eq!(decoded.crop, Crop { x: 240, y: 0, width: 800, height: 720 });
    }

    #[test]
    fn tiles_are_cut_from_a_decode_with_their_pixels() {
        let ssd = InputSpec { width: 300, height: 300, fit: Fit::Stretch };
        let jpeg = pillarboxed_jpeg(1280);
        let full = DecodeLimits { at_model_scale: false, ..DecodeLimits::default() };
        let scaled = Preparer::new(DecodeLimits::default())
            .prepare_tiled(&jpeg, ssd, TileGrid { columns: 2, rows: 2 }, 0.2)
            .unwrap();
        let whole = Preparer::new(full).prepare_tiled(&jpeg, ssd, TileGrid { columns: 2, rows: 2 }, 0.2).unwrap();
        assert_eq!(scaled.len(), 5);
        for (tile, reference) in scaled.iter().zip(&whole).skip(1) {
            assert_eq!(tile.crop, reference.crop);
            // A tile of 704x396 needs the full decode (one made from 1/2 would be blurred).
            assert!(tile.pixels == reference.pixels, "a tile is cut from the full-size decode");
        }
    }

    #[test]
    fn bytes_after_the_end_of_the_image_are_ignored() {
        let limits = DecodeLimits { crop_bars: false, ..DecodeLimits::default() };
        let input = whole_size(64, 64);
        let clean = Preparer::new(limits).decode(&fruits(), true, input).unwrap();
        let mut padded = fruits();
        padded.extend(std::iter::repeat_n(0u8, 4096));
        padded.extend(b"trailing bytes of a capture");
        assert_eq!(Preparer::new(limits).decode(&padded, true, input).unwrap().rgb, clean.rgb);
        let cut = &fruits()[..fruits().len() / 2];
        assert!(refusal(cut).starts_with("truncated"), "{}", refusal(cut));
    }

    #[test]
    fn what_is_not_a_jpeg_is_named() {
        assert!(refusal(b"").starts_with("empty"));
        assert!(refusal(b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR").starts_with("a PNG image"));
        assert!(refusal(b"GIF89a\x01\0").starts_with("a GIF image"));
        assert!(refusal(b"\n<!DOCTYPE html><html><body>502 Bad Gateway").starts_with("an HTML page"));
        assert!(refusal(b"{\"error\": \"no frame\"}").starts_with("text, not an image"));
        let random: Vec<u8> = (0..64u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8 | 0x80).collect();
        assert!(refusal(&random).starts_with("not an image: no JPEG start-of-image marker"), "{}", refusal(&random));
    }

    fn frame(w: usize, h: usize, picture: (usize, usize, usize, usize)) -> Vec<u8> {
        let (x0, y0, x1, y1) = picture;
        let mut rgb = vec![0u8; w * h * 3];
        for y in 0..h {
            for x in 0..w {
                let i = (y * w + x) * 3;
                if x >= x0 && x < x1 && y >= y0 && y < y1 {
                    rgb[i] = (x * 7 % 256) as u8;
                    rgb[i + 1] = (y * 5 % 256) as u8;
                    rgb[i + 2] = 200;
                } else {
                    rgb[i..i + 3].copy_from_slice(&[48, 52, 56]);
                }
            }
        }
        rgb
    }

    #[test]
    fn pillarbox_bars_are_cut() {
        let rgb = frame(320, 180, (60, 0, 260, 180));
        assert_eq!(find_bars(&rgb, 320, 180), Crop { x: 60, y: 0, width: 200, height: 180 });
    }

    #[test]
    fn letterbox_bars_are_cut() {
        let rgb = frame(320, 180, (0, 20, 320, 150));
        assert_eq!(find_bars(&rgb, 320, 180), Crop { x: 0, y: 20, width: 320, height: 130 });
    }

    #[test]
    fn a_product_on_a_plain_background_is_not_cut_out() {
        let rgb = frame(320, 180, (140, 70, 180, 110));
        assert_eq!(find_bars(&rgb, 320, 180), Crop { x: 0, y: 0, width: 320, height: 180 });
    }

    #[test]
    fn uniform_frame_is_left_whole() {
        let rgb = frame(64, 64, (0, 0, 0, 0));
        assert_eq!(find_bars(&rgb, 64, 64), Crop { x: 0, y: 0, width: 64, height: 64 });
    }

    #[test]
    fn boxes_map_back_through_the_crop() {
        let p = Prepared {
            frame_width: 200,
            frame_height: 100,
            crop: Crop { x: 50, y: 0, width: 100, height: 100 },
            width: 10,
            height: 10,
            content: Crop { x: 0, y: 0, width: 10, height: 10 },
            pixels: vec![],
        };
        let b = p.to_frame(0.0, 0.5, 1.0, 1.0);
        assert_eq!((b.x0, b.y0, b.x1, b.y1), (0.25, 0.5, 0.75, 1.0));
    }

    #[test]
    fn letterboxing_keeps_the_aspect_and_boxes_map_back_through_the_padding() {
        let jpeg = std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/fruits.jpg")).unwrap();
        let limits = DecodeLimits { crop_bars: false, ..DecodeLimits::default() };
        let p =
            Preparer::new(limits).prepare(&jpeg, InputSpec { width: 320, height: 320, fit: Fit::Letterbox }).unwrap();
        let aspect = p.frame_width as f32 / p.frame_height as f32;
        assert!((p.content.width as f32 / p.content.height as f32 - aspect).abs() < 0.02, "{:?}", p.content);
        assert!(p.content.width == 320 || p.content.height == 320);
        assert_eq!(&p.pixels[..3], &[PAD; 3], "a corner is padding");
        // The picture's own corners, in input coordinates, are the frame's corners.
        let (c, w, h) = (p.content, 320.0, 320.0);
        let b = p.to_frame(c.x as f32 / w, c.y as f32 / h, (c.x + c.width) as f32 / w, (c.y + c.height) as f32 / h);
        assert_eq!((b.x0, b.y0, b.x1, b.y1), (0.0, 0.0, 1.0, 1.0));
    }

    #[test]
    fn tiles_cover_the_picture_and_overlap() {
        let area = Crop { x: 100, y: 0, width: 1000, height: 600 };
        let t = tiles(area, TileGrid { columns: 2, rows: 2 }, 0.2);
        assert_eq!(t.len(), 4);
        assert_eq!(t[0], Crop { x: 100, y: 0, width: 550, height: 330 });
        assert_eq!(t[3], Crop { x: 550, y: 270, width: 550, height: 330 });
        assert!(tiles(area, TileGrid::NONE, 0.2).is_empty());
    }

    #[test]
    fn three_by_two_tiles_of_a_wide_frame_are_near_square() {
        let frame = Crop { x: 0, y: 0, width: 1280, height: 720 };
        let t = tiles(frame, TileGrid { columns: 3, rows: 2 }, 0.2);
        assert_eq!(t.len(), 6);
        // Rows top to bottom, each left to right; the last reaches the frame's corner.
        assert_eq!(t[0], Crop { x: 0, y: 0, width: 469, height: 396 });
        assert_eq!(t[5], Crop { x: 811, y: 324, width: 469, height: 396 });
        for tile in &t {
            let aspect = tile.width as f32 / tile.height as f32;
            assert!((1.0..1.35).contains(&aspect), "{tile:?}: {aspect}");
        }
        // Where 3 x 3 tiles are as wide as these but 1.6 to 1.8 times wider than high.
        let square = tiles(frame, TileGrid { columns: 3, rows: 3 }, 0.2);
        assert!(square.iter().all(|t| t.width as f32 / t.height as f32 > 1.6), "{square:?}");
    }

    #[test]
    fn garbage_is_not_a_jpeg() {
        let err = prepare(b"definitely not a jpeg", DecodeLimits::default(), 8, 8).unwrap_err();
        assert!(matches!(err, ModelError::BadJpeg(_)), "{err}");
    }

    #[test]
    fn damaged_data_is_refused_by_libjpeg_turbo_as_by_the_walk() {
        use crate::scan_check::tests::{fixture, scan, with_noise, FIXTURES};
        let (mut tried, mut by_walk, mut by_decode) = (0, 0, 0);
        for name in FIXTURES {
            let jpeg = fixture(name);
            let (w, h) = crate::scan_check::frame_size(&jpeg).unwrap();
            // Decoded at scale, and whole: libjpeg-turbo decodes both, with no walk.
            for (input, scaled) in
                [(InputSpec { width: 64, height: 64, fit: Fit::Stretch }, true), (whole_size(w, h), false)]
            {
                let mut preparer = Preparer::new(DecodeLimits::default());
                assert_eq!(preparer.decode(&jpeg, true, input).unwrap().denominator > 1, scaled, "{name}");
                for (i, at) in [0.1, 0.3, 0.5, 0.7, 0.9].into_iter().enumerate() {
                    let bad = with_noise(&jpeg, at, 64, 1 + i as u64);
                    tried += 1;
                    by_walk += crate::scan_check::check(&bad).is_err() as usize;
                    match preparer.prepare(&bad, input) {
                        Err(ModelError::BadJpeg(why)) => {
                            assert!(why.starts_with("damaged:"), "{name}: {why}");
                            by_decode += 1;
                        }
                        Err(other) => panic!("{name}: {other}"),
                        Ok(_) => {}
                    }
                }
                let (start, end) = scan(&jpeg);
                let mut cut = jpeg[..start + (end - start) / 2].to_vec();
                cut.extend_from_slice(&[0xFF, 0xD9]);
                let why = preparer.prepare(&cut, input).map(|_| ()).unwrap_err().to_string();
                assert!(why.contains("ends before the image does"), "{name}: {why}");
            }
        }
        // The walk also finds a run of coefficients past a block's end, which libjpeg-turbo
        // decodes without a warning (one of these frames).
        assert!(by_decode * 10 >= tried * 9, "{by_decode} of {tried} damaged frames refused");
        assert!(by_decode + 2 >= by_walk, "{by_decode} refused, the walk alone finds {by_walk}");
    }

    #[test]
    fn a_truncated_jpeg_is_refused() {
        let jpeg = std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/apple.jpg")).unwrap();
        assert!(prepare(&jpeg, DecodeLimits::default(), 8, 8).is_ok());
        let err = prepare(&jpeg[..jpeg.len() / 2], DecodeLimits::default(), 8, 8).unwrap_err();
        assert!(err.to_string().contains("truncated"), "{err}");
    }

    #[test]
    fn a_header_claiming_huge_dimensions_is_refused_before_decoding() {
        // A real JPEG whose frame header (SOF0) claims 60000x60000 pixels: a decompression bomb.
        let mut jpeg = std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/apple.jpg")).unwrap();
        let sof = jpeg.windows(2).position(|w| w == [0xFF, 0xC0]).expect("a baseline JPEG");
        jpeg[sof + 5..sof + 9].copy_from_slice(&[0xEA, 0x60, 0xEA, 0x60]);
        let err = prepare(&jpeg, DecodeLimits::default(), 8, 8).unwrap_err();
        assert!(matches!(err, ModelError::TooManyPixels { width: 60000, height: 60000, limit: 8192 }), "{err}");
        assert!(err.to_string().contains("decode.max_side"), "the error names the setting: {err}");
    }

    /// Every input that once crashed a fuzz target (tests/fuzz/regressions/jpeg_decode/) is
    /// now refused or decoded, never a panic.
    #[test]
    fn inputs_that_crashed_the_fuzzer_are_answered() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/fuzz/regressions/jpeg_decode");
        let mut seen = 0;
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            let bytes = std::fs::read(&path).unwrap();
            let limits = DecodeLimits { max_side: 2048, ..DecodeLimits::default() };
            if let Err(e) = prepare(&bytes, limits, 64, 48) {
                assert!(!e.to_string().is_empty(), "{}", path.display());
            }
            seen += 1;
        }
        assert!(seen >= 1, "the regression inputs are in {dir}");
    }

    #[test]
    fn oversize_bytes_are_refused_before_decoding() {
        let limits = DecodeLimits { max_bytes: 4, ..DecodeLimits::default() };
        let err = prepare(b"12345", limits, 8, 8).unwrap_err();
        assert!(matches!(err, ModelError::TooLarge { bytes: 5, limit: 4 }), "{err}");
    }
}
