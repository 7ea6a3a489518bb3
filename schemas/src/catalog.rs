use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// An amount of money in minor units (cents), so that prices compare and hash exactly.
/// In JSON it is a plain number with two decimals, e.g. `12.99`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Money(pub i64);

impl Money {
    pub fn as_f64(self) -> f64 {
        self.0 as f64 / 100.0
    }
}

impl Serialize for Money {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_f64(self.as_f64())
    }
}

impl<'de> Deserialize<'de> for Money {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = f64::deserialize(d)?;
        if !v.is_finite() || v < 0.0 {
            return Err(serde::de::Error::custom(format!("price must be a non-negative number, got {v}")));
        }
        Ok(Money((v * 100.0).round() as i64))
    }
}

/// A product that can be shown in a stream, as one line of the catalog.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CatalogItem {
    /// Stock-keeping unit: the product's unique id.
    pub sku: String,
    /// The detector label that stands for this product on screen (e.g. `cup`).
    pub label: String,
    /// Product name shown on the card.
    pub title: String,
    /// Current price.
    pub price: Money,
    /// ISO 4217 currency code, e.g. `EUR`.
    pub currency: String,
    /// Product picture: a URL (`https://...`), or a file (relative to the catalog file) that vitrine serves.
    #[serde(default)]
    pub image: Option<String>,
    /// Link to the product page.
    #[serde(default)]
    pub url: Option<String>,
    /// Whether the product can be bought now.
    #[serde(default = "in_stock_default")]
    pub in_stock: bool,
    /// The streams (shows) whose rundown has this product: only there does its label match
    /// it. Empty: every stream. So one label can stand for different products on different
    /// shows (the red mug on one, the blue one on another).
    /// (Always written: the catalog join crosses timely processes as bincode.)
    #[serde(default)]
    pub streams: Vec<String>,
}

impl CatalogItem {
    /// The picture that what the camera sees is matched against: a JPEG that vitrine serves
    /// (a file of the catalog), or a JPEG at an `http(s)://` URL (its path ends in `.jpg` or
    /// `.jpeg`), which vitrine fetches. PNG, WebP or GIF pictures are not matched (yet): such a
    /// product matches on its label, as one without a picture does.
    pub fn matched_picture(&self) -> Option<&str> {
        let image = self.image.as_deref()?;
        let path = image.split(['?', '#']).next().unwrap_or_default().to_ascii_lowercase();
        let jpeg = path.ends_with(".jpg") || path.ends_with(".jpeg");
        let served = image.starts_with("/v1/images/");
        let fetched = image.starts_with("http://") || image.starts_with("https://");
        ((served || fetched) && jpeg).then_some(image)
    }

    /// Whether this product may be matched on `stream_id`.
    pub fn on_rundown_of(&self, stream_id: &str) -> bool {
        self.streams.is_empty() || self.streams.iter().any(|s| s == stream_id)
    }
}

fn in_stock_default() -> bool {
    true
}
