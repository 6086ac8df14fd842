//! kiln-core: what every dialect shares — element types and tensors, attributes, the error
//! type, the pass manager and the text-format lexer. It knows nothing of any dialect.

pub mod attr;
pub mod dtype;
pub mod error;
pub mod float;
pub mod lexer;
pub mod pass;
pub mod rng;
pub mod tensor;

pub use attr::{Attr, AttrReader, Attrs};
pub use dtype::{DType, TensorType};
pub use error::{Error, ErrorKind, Location, Result};
pub use pass::{Ir, Pass, PassManager, PassOptions, PassRegistry};
pub use rng::Rng;
pub use tensor::{Element, Tensor};
