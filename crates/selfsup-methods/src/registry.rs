//! How methods register themselves: each method's settings are one typed struct, its config
//! (`[method]` in a run's TOML, tagged by `name`), validated where the method lives; a modality
//! lists its methods once with [`method_set!`](crate::method_set), which makes the enum the
//! run config holds, its parsing with errors that name the key, and the dispatch to the
//! modality's builder.

use serde::Serialize;
use serde::de::DeserializeOwned;
/// The TOML types [`MethodSet`] speaks (for [`method_set!`](crate::method_set) in other crates).
pub use toml;

use crate::MethodError;

/// One method's settings: the `[method]` keys besides `name`, with defaults for every key.
pub trait MethodSettings:
    Serialize + DeserializeOwned + Default + Clone + std::fmt::Debug + PartialEq + Send + Sync + 'static
{
    /// `method.name`.
    const NAME: &'static str;

    /// Every value on its own; errors name the key (`method.<key>`).
    fn validate(&self) -> Result<(), MethodError> {
        Ok(())
    }
}

/// A modality's methods, one enum variant each (made by [`method_set!`](crate::method_set)).
pub trait MethodSet: Sized + Clone + std::fmt::Debug + PartialEq + Send + Sync + 'static {
    /// Every `method.name` of the set, in registration order.
    fn names() -> Vec<&'static str>;
    /// The first registered method with its defaults.
    fn first() -> Self;
    fn name(&self) -> &'static str;
    /// The keys a method's `[method]` table may hold besides `name` (its settings' fields).
    fn keys(name: &str) -> Option<Vec<String>>;
    /// The method `name` with the settings of `table` (without `name`); missing keys take
    /// their defaults. Errors name the key and the valid values.
    fn parse(name: &str, table: toml::Table) -> Result<Self, MethodError>;
    /// The settings as a table (with `name`), as a run's config stores them.
    fn to_table(&self) -> toml::Table;
    fn validate(&self) -> Result<(), MethodError>;
}

/// The top-level keys of `T`'s default value serialised as TOML.
pub fn keys_of<T: MethodSettings>() -> Vec<String> {
    match toml::Value::try_from(T::default()) {
        Ok(toml::Value::Table(t)) => t.keys().cloned().collect(),
        _ => Vec::new(),
    }
}

/// `table` as `T` (missing keys default); a key of the wrong type is named with the value
/// it holds and what serde expected.
pub fn parse_settings<T: MethodSettings>(table: toml::Table) -> Result<T, MethodError> {
    for (key, value) in &table {
        // Each value alone on top of the defaults, so the error names its key.
        let mut probe = match toml::Value::try_from(T::default()) {
            Ok(toml::Value::Table(t)) => t,
            _ => toml::Table::new(),
        };
        probe.insert(key.clone(), value.clone());
        if let Err(e) = toml::Value::Table(probe).try_into::<T>() {
            return Err(MethodError::Setting {
                key: format!("method.{key}"),
                message: format!("{value}: {}", e.message()),
            });
        }
    }
    toml::Value::Table(table)
        .try_into::<T>()
        .map_err(|e| MethodError::Setting {
            key: "method".into(),
            message: e.message().to_string(),
        })
}

/// `method.<key>` must be a finite number > 0.
pub fn check_positive(key: &str, v: f64) -> Result<(), MethodError> {
    if v.is_finite() && v > 0.0 {
        Ok(())
    } else {
        Err(MethodError::setting(
            key,
            format!("must be a positive number, got {v}"),
        ))
    }
}

/// `method.<key>` must be a finite number ≥ 0.
pub fn check_non_negative(key: &str, v: f64) -> Result<(), MethodError> {
    if v.is_finite() && v >= 0.0 {
        Ok(())
    } else {
        Err(MethodError::setting(key, format!("must be ≥ 0, got {v}")))
    }
}

/// `method.<key>` must lie within `[lo, hi]`.
pub fn check_within(key: &str, v: f64, lo: f64, hi: f64) -> Result<(), MethodError> {
    if (lo..=hi).contains(&v) {
        Ok(())
    } else {
        Err(MethodError::setting(
            key,
            format!("must be within [{lo}, {hi}], got {v}"),
        ))
    }
}

/// `method.<key>`: head widths (hidden…, output), each within [1, 65536].
pub fn check_widths(key: &str, dims: &[usize]) -> Result<(), MethodError> {
    if dims.is_empty() || dims.iter().any(|&d| !(1..=65536).contains(&d)) {
        Err(MethodError::setting(
            key,
            format!("needs widths within [1, 65536] (hidden…, output), got {dims:?}"),
        ))
    } else {
        Ok(())
    }
}

/// `method.prediction_dims` (BYOL, SimSiam): positive widths ending with the projection's
/// output width, since the prediction regresses a projection.
pub fn check_prediction_dims(
    projection: &[usize],
    prediction: &[usize],
) -> Result<(), MethodError> {
    check_widths("projection_dims", projection)?;
    check_widths("prediction_dims", prediction)?;
    if prediction.last() != projection.last() {
        return Err(MethodError::setting(
            "prediction_dims",
            format!(
                "must end with the projection's output width {:?} (the prediction regresses a projection), got {prediction:?}",
                projection.last()
            ),
        ));
    }
    Ok(())
}

/// `method.ema_momentum`: the momentum teacher's schedule, start and end within [0, 1].
pub fn check_momentum(key: &str, m: [f64; 2]) -> Result<(), MethodError> {
    if m.iter().all(|v| (0.0..=1.0).contains(v)) {
        Ok(())
    } else {
        Err(MethodError::setting(
            key,
            format!("needs start and end within [0, 1], got {m:?}"),
        ))
    }
}

/// Declares a modality's method set: an enum with one variant per method settings type, its
/// [`MethodSet`](crate::registry::MethodSet) implementation, and `visit`, which hands the
/// chosen settings to a visitor generic over the modality's settings trait.
///
/// ```ignore
/// method_set! {
///     /// The image methods.
///     pub enum ImageMethod: ImageMethodVisitor {
///         SimClr(simclr::SimClrConfig),
///         Moco(moco::MocoConfig),
///     }
/// }
/// ```
#[macro_export]
macro_rules! method_set {
    ($(#[$meta:meta])* $vis:vis enum $set:ident: $visitor:ident { $($variant:ident($settings:ty)),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Clone, Debug, PartialEq)]
        $vis enum $set {
            $($variant($settings)),+
        }

        impl $crate::registry::MethodSet for $set {
            fn names() -> Vec<&'static str> {
                vec![$(<$settings as $crate::registry::MethodSettings>::NAME),+]
            }

            fn first() -> Self {
                let all = [$($set::$variant(<$settings>::default())),+];
                all.into_iter().next().expect("a method set has a method")
            }

            fn name(&self) -> &'static str {
                match self {
                    $($set::$variant(_) => <$settings as $crate::registry::MethodSettings>::NAME),+
                }
            }

            fn keys(name: &str) -> Option<Vec<String>> {
                $(if name == <$settings as $crate::registry::MethodSettings>::NAME {
                    return Some($crate::registry::keys_of::<$settings>());
                })+
                None
            }

            fn parse(name: &str, table: $crate::registry::toml::Table) -> Result<Self, $crate::MethodError> {
                $(if name == <$settings as $crate::registry::MethodSettings>::NAME {
                    return Ok($set::$variant($crate::registry::parse_settings::<$settings>(table)?));
                })+
                Err($crate::MethodError::UnknownMethod {
                    name: name.to_string(),
                    available: <Self as $crate::registry::MethodSet>::names().join(", "),
                })
            }

            fn to_table(&self) -> $crate::registry::toml::Table {
                let (name, value) = match self {
                    $($set::$variant(s) => (
                        <$settings as $crate::registry::MethodSettings>::NAME,
                        $crate::registry::toml::Value::try_from(s),
                    )),+
                };
                let mut table = $crate::registry::toml::Table::new();
                table.insert("name".into(), $crate::registry::toml::Value::String(name.into()));
                if let Ok($crate::registry::toml::Value::Table(t)) = value {
                    table.extend(t);
                }
                table
            }

            fn validate(&self) -> Result<(), $crate::MethodError> {
                match self {
                    $($set::$variant(s) => $crate::registry::MethodSettings::validate(s)),+
                }
            }
        }

        impl $set {
            /// Hands the chosen method's settings to `visitor`.
            pub fn visit<V: $visitor>(&self, visitor: V) -> V::Output {
                match self {
                    $($set::$variant(s) => visitor.visit(s)),+
                }
            }
        }
    };
}
