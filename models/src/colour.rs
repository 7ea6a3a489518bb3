//! colour: which hues a picture shows, as a vector whose dot product with another's is the
//! Bhattacharyya coefficient of their hue histograms (1: the same hues in the same shares, 0: no
//! hue in common).
//!
//! An ImageNet embedder is trained to call every apple an apple, so it hardly tells a green apple
//! from a red one (docs/eval.md); a shop sells both. The hue is what tells them apart, and it
//! survives what a live camera changes (light, size, the view): so [`crate::Embedder`] can append
//! it to the model's embedding.

/// Hues in bins of 30 degrees each, centred on red, orange, yellow, ...
const HUES: usize = 12;
/// The hues' bins and one of grey (white, grey and black): grey is a colour too, so a steel
/// pair of scissors on a grey table looks like its picture on white.
pub const HUE_BINS: usize = HUES + 1;

/// Below this chroma (max - min of R, G, B, 0..255) a pixel is grey, white or black: its hue
/// would be noise, so it counts in the grey bin.
const GREY_CHROMA: f32 = 20.0;
/// From this chroma up a pixel counts in full; between the two, in part.
const FULL_CHROMA: f32 = 60.0;

/// The unit-length hue signature of interleaved RGB `pixels`, `width` x `height`: each pixel's
/// hue is shared between the two nearest bins of hue, as much as the pixel is colourful, the
/// rest in the grey bin; every pixel weighs by how near the centre it lies (a crop's edges and a
/// photo's margins are background more often than not). The square root of the normalised
/// histogram: the dot product of two is the Bhattacharyya coefficient. All zeros for no pixels.
pub fn hue_signature(pixels: &[u8], width: usize, height: usize) -> Vec<f32> {
    let mut bins = [0f64; HUE_BINS];
    if width == 0 || height == 0 {
        return vec![0.0; HUE_BINS];
    }
    let centred = |i: usize, n: usize| {
        let t = 2.0 * (i as f32 + 0.5) / n as f32 - 1.0; // -1..1 across
        1.0 - t * t
    };
    let rows: Vec<f32> = (0..height).map(|y| centred(y, height)).collect();
    let columns: Vec<f32> = (0..width).map(|x| centred(x, width)).collect();
    for (y, row) in pixels.chunks_exact(3 * width).take(height).enumerate() {
        for (x, rgb) in row.chunks_exact(3).enumerate() {
            let (r, g, b) = (f32::from(rgb[0]), f32::from(rgb[1]), f32::from(rgb[2]));
            let max = r.max(g).max(b);
            let chroma = max - r.min(g).min(b);
            let colourful = ((chroma - GREY_CHROMA) / (FULL_CHROMA - GREY_CHROMA)).clamp(0.0, 1.0);
            let weight = f64::from(rows[y] * columns[x]);
            bins[HUES] += weight * f64::from(1.0 - colourful);
            if colourful == 0.0 {
                continue;
            }
            let hue = hue_degrees(r, g, b, max, chroma);
            let at = hue / (360.0 / HUES as f32); // 0..12, bin i centred on i
            let below = at.floor();
            let share = at - below;
            let weight = weight * f64::from(colourful);
            bins[below as usize % HUES] += weight * f64::from(1.0 - share);
            bins[(below as usize + 1) % HUES] += weight * f64::from(share);
        }
    }
    let total: f64 = bins.iter().sum();
    if total <= 0.0 {
        return vec![0.0; HUE_BINS];
    }
    bins.iter().map(|b| (b / total).sqrt() as f32).collect()
}

/// The hue (0..360) of a pixel whose chroma is not 0.
fn hue_degrees(r: f32, g: f32, b: f32, max: f32, chroma: f32) -> f32 {
    let sector = if max == r {
        ((g - b) / chroma).rem_euclid(6.0)
    } else if max == g {
        (b - r) / chroma + 2.0
    } else {
        (r - g) / chroma + 4.0
    };
    (sector * 60.0).rem_euclid(360.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn picture(width: usize, height: usize, colour: impl Fn(usize, usize) -> [u8; 3]) -> Vec<u8> {
        let mut pixels = Vec::with_capacity(3 * width * height);
        for y in 0..height {
            for x in 0..width {
                pixels.extend(colour(x, y));
            }
        }
        pixels
    }

    fn dot(a: &[f32], b: &[f32]) -> f32 {
        a.iter().zip(b).map(|(x, y)| x * y).sum()
    }

    #[test]
    fn hues_are_the_colour_wheel() {
        for (rgb, want) in [([255u8, 0, 0], 0.0), ([255, 255, 0], 60.0), ([0, 255, 0], 120.0), ([0, 0, 255], 240.0)] {
            let [r, g, b] = rgb.map(|v: u8| f32::from(v));
            let max = r.max(g).max(b);
            assert_eq!(hue_degrees(r, g, b, max, max - r.min(g).min(b)), want, "{rgb:?}");
        }
        assert!(hue_degrees(255.0, 0.0, 1.0, 255.0, 255.0) > 359.0, "just short of red is near 360, not negative");
    }

    #[test]
    fn the_same_hue_on_other_backgrounds_scores_near_one_and_another_hue_near_zero() {
        let green_on_white = picture(40, 40, |x, y| {
            if (10..30).contains(&x) && (8..32).contains(&y) {
                [80, 200, 40]
            } else {
                [250, 250, 250]
            }
        });
        let green_on_grey =
            picture(
                30,
                30,
                |x, y| if (5..25).contains(&x) && (5..25).contains(&y) { [60, 150, 30] } else { [120, 118, 115] },
            );
        let red_on_white = picture(40, 40, |x, y| {
            if (10..30).contains(&x) && (8..32).contains(&y) {
                [200, 30, 30]
            } else {
                [250, 250, 250]
            }
        });
        let green = hue_signature(&green_on_white, 40, 40);
        assert!((dot(&green, &green) - 1.0).abs() < 1e-5, "unit length");
        let green_on_grey = hue_signature(&green_on_grey, 30, 30);
        assert!(dot(&green, &green_on_grey) > 0.9, "the background weighs little");
        let red = hue_signature(&red_on_white, 40, 40);
        // Only the white they share: the grey bin.
        assert!(dot(&green, &red) < 0.6, "{}", dot(&green, &red));
        assert!(dot(&green, &green_on_grey) > dot(&green, &red) + 0.4);
    }

    #[test]
    fn greys_of_any_lightness_are_alike_and_unlike_a_colour() {
        let greys = picture(8, 8, |x, _| [x as u8 * 30, x as u8 * 30 + 5, x as u8 * 30]);
        let white = picture(8, 8, |_, _| [250, 250, 250]);
        let greys = hue_signature(&greys, 8, 8);
        assert!(dot(&greys, &hue_signature(&white, 8, 8)) > 0.99);
        assert!(dot(&greys, &hue_signature(&picture(8, 8, |_, _| [200, 30, 30]), 8, 8)) < 0.01);
        assert!(hue_signature(&[], 0, 0).iter().all(|&v| v == 0.0), "no pixels: similar to nothing");
    }

    #[test]
    fn hues_between_bins_are_shared_so_near_hues_still_overlap() {
        let yellow_green = hue_signature(&picture(4, 4, |_, _| [160, 200, 40]), 4, 4); // about 75 degrees
        let green = hue_signature(&picture(4, 4, |_, _| [100, 200, 40]), 4, 4); // about 98 degrees
        let red = hue_signature(&picture(4, 4, |_, _| [200, 40, 40]), 4, 4);
        assert!(dot(&yellow_green, &green) > 0.5);
        assert!(dot(&yellow_green, &green) > dot(&yellow_green, &red) + 0.5);
    }
}
