//! Hand-written `prost` message types for the ONNX protobuf schema.
//!
//! These mirror `onnx.proto` as shipped with onnx 1.23 (`onnx-ml.proto` has the
//! same messages and field numbers). They are written by hand so the crate
//! needs neither `protoc` nor a `build.rs`; the layout follows what
//! `prost-build` would emit, so code written against generated ONNX bindings
//! reads the same.
//!
//! Conventions worth knowing when using these types:
//!
//! * `onnx.proto` is `proto2`. Every `optional` scalar is therefore an
//!   `Option<T>` (presence is part of the data: an `INT` attribute with `i = 0`
//!   is written with the field present, exactly like onnx's own serialiser).
//!   `prost` derives a plain accessor for each one (`node.op_type()`,
//!   `attr.i()`, `tensor.data_type()`, `attr.r#type()`) that returns the
//!   default when the field is absent, so reading rarely needs `Option`.
//! * `data_type` / `elem_type` / `key_type` are declared `int32` in the schema
//!   (not the enum), so they stay `i32` here; convert with
//!   `tensor_proto::DataType::try_from(t.data_type())`, which keeps unknown
//!   future element types visible as an error instead of folding them into
//!   `Undefined`.
//! * Packing: in proto2 a repeated scalar is *unpacked* unless annotated.
//!   Only `TensorProto.{float,int32,int64,double,uint64}_data` carry
//!   `[packed = true]`; `TensorProto.dims`, `SparseTensorProto.dims`,
//!   `AttributeProto.{floats,ints}` and the sharding `int64` lists are
//!   unpacked. `prost` defaults to packed, so those fields say
//!   `packed = "false"` to make our encoder write the same bytes as onnx.
//!   (Decoding accepts either form regardless.)
//! * Unknown fields are skipped on decode (the derived `merge_field` falls
//!   through to `prost::encoding::skip_field`), so a model produced by a newer
//!   onnx with fields we do not know still parses; those fields are dropped if
//!   the message is re-encoded. Every message of the 1.23 schema is present
//!   here, so nothing current is lost on a round trip.
//! * `prost` encodes a `oneof` at the position of its lowest tag. For
//!   `TypeProto` this means a non-tensor type (tags 4..=9) is written before
//!   `denotation` (6) even when its tag is higher; still valid protobuf,
//!   just not byte-identical to onnx when both are set.

// ---------------------------------------------------------------------------
// Model / graph structure
// ---------------------------------------------------------------------------

/// A serialised `.onnx` file: metadata, opset imports, the main graph and
/// any model-local functions.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ModelProto {
    /// IR version the file was written against (`onnx.IR_VERSION` at export).
    #[prost(int64, optional, tag = "1")]
    pub ir_version: Option<i64>,
    /// Which operator-set version each domain's ops are interpreted at.
    #[prost(message, repeated, tag = "8")]
    pub opset_import: Vec<OperatorSetIdProto>,
    #[prost(string, optional, tag = "2")]
    pub producer_name: Option<String>,
    #[prost(string, optional, tag = "3")]
    pub producer_version: Option<String>,
    #[prost(string, optional, tag = "4")]
    pub domain: Option<String>,
    #[prost(int64, optional, tag = "5")]
    pub model_version: Option<i64>,
    #[prost(string, optional, tag = "6")]
    pub doc_string: Option<String>,
    #[prost(message, optional, tag = "7")]
    pub graph: Option<GraphProto>,
    #[prost(message, repeated, tag = "14")]
    pub metadata_props: Vec<StringStringEntryProto>,
    /// Training-only graphs; kept so re-encoding a model does not drop them.
    #[prost(message, repeated, tag = "20")]
    pub training_info: Vec<TrainingInfoProto>,
    /// Model-local functions, called by nodes whose `(domain, op_type)`
    /// matches the function's `(domain, name)`.
    #[prost(message, repeated, tag = "25")]
    pub functions: Vec<FunctionProto>,
    /// Multi-device (sharding) configurations; irrelevant for a CPU target
    /// but decoded so they survive a round trip.
    #[prost(message, repeated, tag = "26")]
    pub configuration: Vec<DeviceConfigurationProto>,
}

/// A computation graph: nodes in topological order plus its interface.
#[derive(Clone, PartialEq, prost::Message)]
pub struct GraphProto {
    #[prost(message, repeated, tag = "1")]
    pub node: Vec<NodeProto>,
    #[prost(string, optional, tag = "2")]
    pub name: Option<String>,
    /// Constant tensors (weights). Names may also appear in `input`.
    #[prost(message, repeated, tag = "5")]
    pub initializer: Vec<TensorProto>,
    #[prost(message, repeated, tag = "15")]
    pub sparse_initializer: Vec<SparseTensorProto>,
    #[prost(string, optional, tag = "10")]
    pub doc_string: Option<String>,
    #[prost(message, repeated, tag = "11")]
    pub input: Vec<ValueInfoProto>,
    #[prost(message, repeated, tag = "12")]
    pub output: Vec<ValueInfoProto>,
    /// Optional type/shape information for intermediate values.
    #[prost(message, repeated, tag = "13")]
    pub value_info: Vec<ValueInfoProto>,
    #[prost(message, repeated, tag = "14")]
    pub quantization_annotation: Vec<TensorAnnotation>,
    #[prost(message, repeated, tag = "16")]
    pub metadata_props: Vec<StringStringEntryProto>,
}

/// One operator invocation.
#[derive(Clone, PartialEq, prost::Message)]
pub struct NodeProto {
    /// Value names; an empty string marks an omitted optional input.
    #[prost(string, repeated, tag = "1")]
    pub input: Vec<String>,
    #[prost(string, repeated, tag = "2")]
    pub output: Vec<String>,
    #[prost(string, optional, tag = "3")]
    pub name: Option<String>,
    #[prost(string, optional, tag = "4")]
    pub op_type: Option<String>,
    /// Empty (or absent) means the default `ai.onnx` domain.
    #[prost(string, optional, tag = "7")]
    pub domain: Option<String>,
    /// Selects among overloaded model-local functions.
    #[prost(string, optional, tag = "8")]
    pub overload: Option<String>,
    #[prost(message, repeated, tag = "5")]
    pub attribute: Vec<AttributeProto>,
    #[prost(string, optional, tag = "6")]
    pub doc_string: Option<String>,
    #[prost(message, repeated, tag = "9")]
    pub metadata_props: Vec<StringStringEntryProto>,
    #[prost(message, repeated, tag = "10")]
    pub device_configurations: Vec<NodeDeviceConfigurationProto>,
}

/// A named attribute of a node (or a default of a function attribute).
///
/// Only the field selected by `type` is meaningful; the value fields are not a
/// protobuf `oneof` in the schema, so they are independent fields here too.
#[derive(Clone, PartialEq, prost::Message)]
pub struct AttributeProto {
    #[prost(string, optional, tag = "1")]
    pub name: Option<String>,
    /// Inside a function body: the name of the caller's attribute this one
    /// refers to (the value fields are then empty).
    #[prost(string, optional, tag = "21")]
    pub ref_attr_name: Option<String>,
    #[prost(string, optional, tag = "13")]
    pub doc_string: Option<String>,
    /// Discriminator for the value fields below.
    #[prost(enumeration = "attribute_proto::AttributeType", optional, tag = "20")]
    pub r#type: Option<i32>,
    #[prost(float, optional, tag = "2")]
    pub f: Option<f32>,
    #[prost(int64, optional, tag = "3")]
    pub i: Option<i64>,
    /// `bytes`, not `string`: ONNX does not promise UTF-8 here.
    #[prost(bytes = "vec", optional, tag = "4")]
    pub s: Option<Vec<u8>>,
    #[prost(message, optional, tag = "5")]
    pub t: Option<TensorProto>,
    #[prost(message, optional, tag = "6")]
    pub g: Option<GraphProto>,
    #[prost(message, optional, tag = "22")]
    pub sparse_tensor: Option<SparseTensorProto>,
    #[prost(message, optional, tag = "14")]
    pub tp: Option<TypeProto>,
    /// Unpacked in the proto2 schema.
    #[prost(float, repeated, packed = "false", tag = "7")]
    pub floats: Vec<f32>,
    /// Unpacked in the proto2 schema.
    #[prost(int64, repeated, packed = "false", tag = "8")]
    pub ints: Vec<i64>,
    #[prost(bytes = "vec", repeated, tag = "9")]
    pub strings: Vec<Vec<u8>>,
    #[prost(message, repeated, tag = "10")]
    pub tensors: Vec<TensorProto>,
    #[prost(message, repeated, tag = "11")]
    pub graphs: Vec<GraphProto>,
    #[prost(message, repeated, tag = "23")]
    pub sparse_tensors: Vec<SparseTensorProto>,
    #[prost(message, repeated, tag = "15")]
    pub type_protos: Vec<TypeProto>,
}

/// Nested types of [`AttributeProto`].
pub mod attribute_proto {
    /// Which value field of an [`AttributeProto`](super::AttributeProto) is set.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
    #[repr(i32)]
    pub enum AttributeType {
        Undefined = 0,
        Float = 1,
        Int = 2,
        String = 3,
        Tensor = 4,
        Graph = 5,
        Floats = 6,
        Ints = 7,
        Strings = 8,
        Tensors = 9,
        Graphs = 10,
        SparseTensor = 11,
        SparseTensors = 12,
        TypeProto = 13,
        TypeProtos = 14,
    }
}

/// A named, typed value (graph input/output or annotated intermediate).
#[derive(Clone, PartialEq, prost::Message)]
pub struct ValueInfoProto {
    #[prost(string, optional, tag = "1")]
    pub name: Option<String>,
    #[prost(message, optional, tag = "2")]
    pub r#type: Option<TypeProto>,
    #[prost(string, optional, tag = "3")]
    pub doc_string: Option<String>,
    #[prost(message, repeated, tag = "4")]
    pub metadata_props: Vec<StringStringEntryProto>,
}

/// `(domain, version)` pair; an empty domain is the default `ai.onnx` one.
#[derive(Clone, PartialEq, prost::Message)]
pub struct OperatorSetIdProto {
    #[prost(string, optional, tag = "1")]
    pub domain: Option<String>,
    #[prost(int64, optional, tag = "2")]
    pub version: Option<i64>,
}

/// Generic key/value pair (metadata, external-data location, bindings).
#[derive(Clone, PartialEq, prost::Message)]
pub struct StringStringEntryProto {
    #[prost(string, optional, tag = "1")]
    pub key: Option<String>,
    #[prost(string, optional, tag = "2")]
    pub value: Option<String>,
}

/// Names the scale / zero-point tensors attached to a quantized tensor.
#[derive(Clone, PartialEq, prost::Message)]
pub struct TensorAnnotation {
    #[prost(string, optional, tag = "1")]
    pub tensor_name: Option<String>,
    #[prost(message, repeated, tag = "2")]
    pub quant_parameter_tensor_names: Vec<StringStringEntryProto>,
}

/// A model-local function. Decoded so models that carry one still parse.
#[derive(Clone, PartialEq, prost::Message)]
pub struct FunctionProto {
    #[prost(string, optional, tag = "1")]
    pub name: Option<String>,
    #[prost(string, repeated, tag = "4")]
    pub input: Vec<String>,
    #[prost(string, repeated, tag = "5")]
    pub output: Vec<String>,
    /// Attribute names without defaults.
    #[prost(string, repeated, tag = "6")]
    pub attribute: Vec<String>,
    /// Attributes with default values.
    #[prost(message, repeated, tag = "11")]
    pub attribute_proto: Vec<AttributeProto>,
    #[prost(message, repeated, tag = "7")]
    pub node: Vec<NodeProto>,
    #[prost(string, optional, tag = "8")]
    pub doc_string: Option<String>,
    #[prost(message, repeated, tag = "9")]
    pub opset_import: Vec<OperatorSetIdProto>,
    #[prost(string, optional, tag = "10")]
    pub domain: Option<String>,
    #[prost(string, optional, tag = "13")]
    pub overload: Option<String>,
    #[prost(message, repeated, tag = "12")]
    pub value_info: Vec<ValueInfoProto>,
    #[prost(message, repeated, tag = "14")]
    pub metadata_props: Vec<StringStringEntryProto>,
}

/// Training-time graphs; carried only so a round trip is lossless.
#[derive(Clone, PartialEq, prost::Message)]
pub struct TrainingInfoProto {
    #[prost(message, optional, tag = "1")]
    pub initialization: Option<GraphProto>,
    #[prost(message, optional, tag = "2")]
    pub algorithm: Option<GraphProto>,
    #[prost(message, repeated, tag = "3")]
    pub initialization_binding: Vec<StringStringEntryProto>,
    #[prost(message, repeated, tag = "4")]
    pub update_binding: Vec<StringStringEntryProto>,
}

// ---------------------------------------------------------------------------
// Tensors
// ---------------------------------------------------------------------------

/// A dense tensor value (initializer, `Constant` value, tensor attribute).
///
/// The payload lives in exactly one of `raw_data` (little-endian bytes; what
/// exporters normally write), one typed `*_data` list, or an external file
/// described by `external_data`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct TensorProto {
    /// Unpacked in the proto2 schema; empty means a scalar.
    #[prost(int64, repeated, packed = "false", tag = "1")]
    pub dims: Vec<i64>,
    /// A [`tensor_proto::DataType`] value, declared `int32` in the schema.
    #[prost(int32, optional, tag = "2")]
    pub data_type: Option<i32>,
    #[prost(message, optional, tag = "3")]
    pub segment: Option<tensor_proto::Segment>,
    /// `FLOAT` and `COMPLEX64` payloads. Packed, as annotated in the schema.
    #[prost(float, repeated, packed = "true", tag = "4")]
    pub float_data: Vec<f32>,
    /// Payload of every element type narrower than 32 bits (`INT8`, `UINT8`,
    /// `BOOL`, `FLOAT16`, ... widened to one `int32` each) and `INT32`.
    /// Packed, as annotated in the schema.
    #[prost(int32, repeated, packed = "true", tag = "5")]
    pub int32_data: Vec<i32>,
    #[prost(bytes = "vec", repeated, tag = "6")]
    pub string_data: Vec<Vec<u8>>,
    /// Packed, as annotated in the schema.
    #[prost(int64, repeated, packed = "true", tag = "7")]
    pub int64_data: Vec<i64>,
    #[prost(string, optional, tag = "8")]
    pub name: Option<String>,
    #[prost(string, optional, tag = "12")]
    pub doc_string: Option<String>,
    /// Little-endian element bytes (sub-byte types bit-packed).
    #[prost(bytes = "vec", optional, tag = "9")]
    pub raw_data: Option<Vec<u8>>,
    /// `location` / `offset` / `length` / `checksum` keys when
    /// `data_location` is `EXTERNAL`.
    #[prost(message, repeated, tag = "13")]
    pub external_data: Vec<StringStringEntryProto>,
    #[prost(enumeration = "tensor_proto::DataLocation", optional, tag = "14")]
    pub data_location: Option<i32>,
    /// `DOUBLE` and `COMPLEX128` payloads. Packed, as annotated in the schema.
    #[prost(double, repeated, packed = "true", tag = "10")]
    pub double_data: Vec<f64>,
    /// `UINT32` and `UINT64` payloads. Packed, as annotated in the schema.
    #[prost(uint64, repeated, packed = "true", tag = "11")]
    pub uint64_data: Vec<u64>,
    #[prost(message, repeated, tag = "16")]
    pub metadata_props: Vec<StringStringEntryProto>,
}

/// Nested types of [`TensorProto`].
pub mod tensor_proto {
    /// Element types. Stored as a plain `i32` in the messages.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
    #[repr(i32)]
    pub enum DataType {
        Undefined = 0,
        Float = 1,
        Uint8 = 2,
        Int8 = 3,
        Uint16 = 4,
        Int16 = 5,
        Int32 = 6,
        Int64 = 7,
        String = 8,
        Bool = 9,
        Float16 = 10,
        Double = 11,
        Uint32 = 12,
        Uint64 = 13,
        Complex64 = 14,
        Complex128 = 15,
        Bfloat16 = 16,
        Float8e4m3fn = 17,
        Float8e4m3fnuz = 18,
        Float8e5m2 = 19,
        Float8e5m2fnuz = 20,
        Uint4 = 21,
        Int4 = 22,
        Float4e2m1 = 23,
        Float8e8m0 = 24,
        Uint2 = 25,
        Int2 = 26,
        Float6e2m3 = 27,
        Float6e3m2 = 28,
    }

    /// Where a tensor's payload lives.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
    #[repr(i32)]
    pub enum DataLocation {
        /// In this message (`raw_data` or a typed list).
        Default = 0,
        /// In a side file named by `external_data`.
        External = 1,
    }

    /// Element range `[begin, end)` when a large tensor is split over
    /// several messages.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Segment {
        #[prost(int64, optional, tag = "1")]
        pub begin: Option<i64>,
        #[prost(int64, optional, tag = "2")]
        pub end: Option<i64>,
    }
}

/// COO sparse tensor: `values` (1-D) at `indices` within a tensor of `dims`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct SparseTensorProto {
    #[prost(message, optional, tag = "1")]
    pub values: Option<TensorProto>,
    #[prost(message, optional, tag = "2")]
    pub indices: Option<TensorProto>,
    /// Unpacked in the proto2 schema.
    #[prost(int64, repeated, packed = "false", tag = "3")]
    pub dims: Vec<i64>,
}

// ---------------------------------------------------------------------------
// Types and shapes
// ---------------------------------------------------------------------------

/// A (possibly partially known) tensor shape.
#[derive(Clone, PartialEq, prost::Message)]
pub struct TensorShapeProto {
    #[prost(message, repeated, tag = "1")]
    pub dim: Vec<tensor_shape_proto::Dimension>,
}

/// Nested types of [`TensorShapeProto`].
pub mod tensor_shape_proto {
    /// One axis: a concrete size, a symbolic name, or (neither set) unknown.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Dimension {
        #[prost(oneof = "dimension::Value", tags = "1, 2")]
        pub value: Option<dimension::Value>,
        #[prost(string, optional, tag = "3")]
        pub denotation: Option<String>,
    }

    /// Nested types of [`Dimension`].
    pub mod dimension {
        /// A `oneof` in the schema: a dimension is a number *or* a symbol.
        #[derive(Clone, PartialEq, prost::Oneof)]
        pub enum Value {
            #[prost(int64, tag = "1")]
            DimValue(i64),
            #[prost(string, tag = "2")]
            DimParam(String),
        }
    }
}

/// The type of a value: a tensor, or one of the non-tensor container types.
#[derive(Clone, PartialEq, prost::Message)]
pub struct TypeProto {
    #[prost(oneof = "type_proto::Value", tags = "1, 4, 5, 9, 8, 7")]
    pub value: Option<type_proto::Value>,
    #[prost(string, optional, tag = "6")]
    pub denotation: Option<String>,
}

/// Nested types of [`TypeProto`].
pub mod type_proto {
    /// A `oneof` in the schema: a value has exactly one kind of type.
    #[derive(Clone, PartialEq, prost::Oneof)]
    pub enum Value {
        #[prost(message, tag = "1")]
        TensorType(Tensor),
        #[prost(message, tag = "4")]
        SequenceType(Sequence),
        #[prost(message, tag = "5")]
        MapType(Map),
        #[prost(message, tag = "9")]
        OptionalType(Optional),
        #[prost(message, tag = "8")]
        SparseTensorType(SparseTensor),
        #[prost(message, tag = "7")]
        OpaqueType(Opaque),
    }

    /// Dense tensor type: element type plus optional shape.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Tensor {
        /// A [`DataType`](super::tensor_proto::DataType) value.
        #[prost(int32, optional, tag = "1")]
        pub elem_type: Option<i32>,
        /// Absent means the rank is unknown.
        #[prost(message, optional, tag = "2")]
        pub shape: Option<super::TensorShapeProto>,
    }

    /// Homogeneous sequence. Boxed because `TypeProto` nests recursively.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Sequence {
        #[prost(message, optional, boxed, tag = "1")]
        pub elem_type: Option<Box<super::TypeProto>>,
    }

    /// Map from a scalar key type. Boxed because `TypeProto` nests recursively.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Map {
        /// A [`DataType`](super::tensor_proto::DataType) value.
        #[prost(int32, optional, tag = "1")]
        pub key_type: Option<i32>,
        #[prost(message, optional, boxed, tag = "2")]
        pub value_type: Option<Box<super::TypeProto>>,
    }

    /// Possibly-absent value. Boxed because `TypeProto` nests recursively.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Optional {
        #[prost(message, optional, boxed, tag = "1")]
        pub elem_type: Option<Box<super::TypeProto>>,
    }

    /// Sparse tensor type.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct SparseTensor {
        /// A [`DataType`](super::tensor_proto::DataType) value.
        #[prost(int32, optional, tag = "1")]
        pub elem_type: Option<i32>,
        #[prost(message, optional, tag = "2")]
        pub shape: Option<super::TensorShapeProto>,
    }

    /// Opaque (domain-defined) type.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Opaque {
        #[prost(string, optional, tag = "1")]
        pub domain: Option<String>,
        #[prost(string, optional, tag = "2")]
        pub name: Option<String>,
    }
}

// ---------------------------------------------------------------------------
// Multi-device configuration (decoded only so round trips are lossless)
// ---------------------------------------------------------------------------

/// A named device mesh used by node sharding specs.
#[derive(Clone, PartialEq, prost::Message)]
pub struct DeviceConfigurationProto {
    #[prost(string, optional, tag = "1")]
    pub name: Option<String>,
    #[prost(int32, optional, tag = "2")]
    pub num_devices: Option<i32>,
    #[prost(string, repeated, tag = "3")]
    pub device: Vec<String>,
}

/// Per-node choice of device configuration.
#[derive(Clone, PartialEq, prost::Message)]
pub struct NodeDeviceConfigurationProto {
    #[prost(string, optional, tag = "1")]
    pub configuration_id: Option<String>,
    #[prost(message, repeated, tag = "2")]
    pub sharding_spec: Vec<ShardingSpecProto>,
    #[prost(int32, optional, tag = "3")]
    pub pipeline_stage: Option<i32>,
}

/// How one tensor is split across devices.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ShardingSpecProto {
    #[prost(string, optional, tag = "1")]
    pub tensor_name: Option<String>,
    /// Unpacked in the proto2 schema.
    #[prost(int64, repeated, packed = "false", tag = "2")]
    pub device: Vec<i64>,
    #[prost(message, repeated, tag = "3")]
    pub index_to_device_group_map: Vec<IntIntListEntryProto>,
    #[prost(message, repeated, tag = "4")]
    pub sharded_dim: Vec<ShardedDimProto>,
}

/// `int64 -> [int64]` map entry.
#[derive(Clone, PartialEq, prost::Message)]
pub struct IntIntListEntryProto {
    #[prost(int64, optional, tag = "1")]
    pub key: Option<i64>,
    /// Unpacked in the proto2 schema.
    #[prost(int64, repeated, packed = "false", tag = "2")]
    pub value: Vec<i64>,
}

/// Sharding of one tensor axis.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ShardedDimProto {
    #[prost(int64, optional, tag = "1")]
    pub axis: Option<i64>,
    #[prost(message, repeated, tag = "2")]
    pub simple_sharding: Vec<SimpleShardedDimProto>,
}

/// One even split of an axis.
#[derive(Clone, PartialEq, prost::Message)]
pub struct SimpleShardedDimProto {
    #[prost(oneof = "simple_sharded_dim_proto::Dim", tags = "1, 2")]
    pub dim: Option<simple_sharded_dim_proto::Dim>,
    #[prost(int64, optional, tag = "3")]
    pub num_shards: Option<i64>,
}

/// Nested types of [`SimpleShardedDimProto`].
pub mod simple_sharded_dim_proto {
    /// A `oneof` in the schema: the split axis size is a number or a symbol.
    #[derive(Clone, PartialEq, prost::Oneof)]
    pub enum Dim {
        #[prost(int64, tag = "1")]
        DimValue(i64),
        #[prost(string, tag = "2")]
        DimParam(String),
    }
}

#[cfg(test)]
mod tests {
    use super::attribute_proto::AttributeType;
    use super::tensor_proto::{DataLocation, DataType};
    use super::tensor_shape_proto::dimension::Value as Dim;
    use super::type_proto::Value as Ty;
    use super::*;
    use prost::Message;

    // Fixtures: `ModelProto.SerializeToString()` output of onnx 1.23.2's
    // Python package, built with `onnx.helper` (script kept out of tree; it
    // only calls make_node / make_graph / make_model and friends).

    /// Conv -> Relu, opset 13, made with `onnx.helper` (onnx 1.23.2).
    const CONV_MODEL: &[u8] =
        b"\x08\x08\x12\x0ckiln-fixture:\xc4\x02\x0az\x0a\x01X\x0a\x01W\x0a\x01B\x12\x01Y\x1a\
          \x05conv0\x22\x04Conv\x2a\x15\x0a\x08auto_pad\x22\x06NOTSET\xa0\x01\x03\x2a\x0c\x0a\
          \x05group\x18\x01\xa0\x01\x02\x2a\x15\x0a\x0ckernel_shape\x40\x03\x40\x03\xa0\x01\
          \x07\x2a\x11\x0a\x04pads\x40\x01\x40\x01\x40\x01\x40\x01\xa0\x01\x07\x2a\x10\x0a\x07\
          strides\x40\x01\x40\x01\xa0\x01\x07\x0a\x13\x0a\x01Y\x12\x01Z\x1a\x05relu0\x22\x04Re\
          lu\x12\x09tiny_conv\x2aW\x08\x02\x08\x01\x08\x03\x08\x03\x10\x01B\x01WJH\x00\x00\x00\
          \x00\x00\x00\x00\x3f\x00\x00\x80\x3f\x00\x00\xc0\x3f\x00\x00\x00\x40\x00\x00\x20\x40\
          \x00\x00\x40\x40\x00\x00\x60\x40\x00\x00\x80\x40\x00\x00\x90\x40\x00\x00\xa0\x40\x00\
          \x00\xb0\x40\x00\x00\xc0\x40\x00\x00\xd0\x40\x00\x00\xe0\x40\x00\x00\xf0\x40\x00\x00\
          \x00A\x00\x00\x08A\x2a\x11\x08\x02\x10\x01\x22\x08\x00\x00\x80\x3e\x00\x00\xc0\xbfB\
          \x01BZ\x1c\x0a\x01X\x12\x17\x0a\x15\x08\x01\x12\x11\x0a\x03\x12\x01N\x0a\x02\x08\x01\
          \x0a\x02\x08\x05\x0a\x02\x08\x05b\x1c\x0a\x01Z\x12\x17\x0a\x15\x08\x01\x12\x11\x0a\
          \x03\x12\x01N\x0a\x02\x08\x02\x0a\x02\x08\x05\x0a\x02\x08\x05B\x04\x0a\x00\x10\x0d";

    /// QDQ, If subgraphs, sequence/optional/map types, external data, local function.
    const ODD_MODEL: &[u8] =
        b"\x08\x09:\xfa\x03\x0a\x2b\x0a\x01X\x0a\x01s\x0a\x02zp\x12\x02Xq\x22\x0eQuantizeLinea\
          r\x2a\x0b\x0a\x04axis\x18\x00\xa0\x01\x02\x0a.\x0a\x02Xq\x0a\x01s\x0a\x02zp\x12\x02X\
          d\x22\x10DequantizeLinear\x2a\x0b\x0a\x04axis\x18\x00\xa0\x01\x02\x0a\x23\x0a\x02Xd\
          \x12\x01L\x22\x09LeakyRelu\x2a\x0f\x0a\x05alpha\x15\x00\x00\x00\x3f\xa0\x01\x01\x0as\
          \x0a\x01c\x12\x01O\x22\x02If\x2a0\x0a\x0belse_branch2\x1e\x0a\x0b\x0a\x01L\x12\x01e\
          \x22\x03Neg\x12\x04elseb\x09\x0a\x01e\x12\x04\x0a\x02\x08\x01\xa0\x01\x05\x2a5\x0a\
          \x0bthen_branch2\x23\x0a\x10\x0a\x01L\x12\x01t\x22\x08Identity\x12\x04thenb\x09\x0a\
          \x01t\x12\x04\x0a\x02\x08\x01\xa0\x01\x05\x0a\x14\x0a\x01O\x12\x01F\x22\x05Twice:\
          \x05local\x12\x0bodd_corners\x2a\x0b\x10\x01\x22\x04\x00\x00\x00\x3eB\x01s\x2a\x12\
          \x10\x03\x2a\x0a\xfd\xff\xff\xff\xff\xff\xff\xff\xff\x01B\x02zp\x2a\x16\x08\x02\x10\
          \x07:\x0b\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01\x04B\x03shp\x2a9\x08\x04\x10\x01B\
          \x03extj\x11\x0a\x08location\x12\x05w.binj\x0b\x0a\x06offset\x12\x010j\x0c\x0a\x06le\
          ngth\x12\x0216p\x01Z\x0f\x0a\x01X\x12\x0a\x0a\x08\x08\x01\x12\x04\x0a\x02\x08\x04Z\
          \x0b\x0a\x01c\x12\x06\x0a\x04\x08\x09\x12\x00b\x0f\x0a\x01F\x12\x0a\x0a\x08\x08\x01\
          \x12\x04\x0a\x02\x08\x04j\x15\x0a\x03seq\x12\x0e\x22\x0c\x0a\x0a\x0a\x08\x08\x07\x12\
          \x04\x0a\x02\x08\x03j\x0f\x0a\x03opt\x12\x08J\x06\x0a\x04\x0a\x02\x08\x01j\x13\x0a\
          \x03map\x12\x0c\x2a\x0a\x08\x08\x12\x06\x0a\x04\x08\x01\x12\x00B\x04\x0a\x00\x10\x13\
          B\x09\x0a\x05local\x10\x01r\x0e\x0a\x06author\x12\x04kiln\xca\x01\x2a\x0a\x05Twice\
          \x22\x01a\x2a\x01b:\x0e\x0a\x01a\x0a\x01a\x12\x01b\x22\x03AddJ\x04\x0a\x00\x10\x13R\
          \x05local";

    fn attr<'a>(node: &'a NodeProto, name: &str) -> &'a AttributeProto {
        node.attribute
            .iter()
            .find(|a| a.name() == name)
            .unwrap_or_else(|| panic!("{} has no attribute {name}", node.op_type()))
    }

    fn init<'a>(graph: &'a GraphProto, name: &str) -> &'a TensorProto {
        graph
            .initializer
            .iter()
            .find(|t| t.name() == name)
            .unwrap_or_else(|| panic!("no initializer {name}"))
    }

    fn dims_of(vi: &ValueInfoProto) -> Vec<Option<Dim>> {
        match vi.r#type.as_ref().and_then(|t| t.value.as_ref()) {
            Some(Ty::TensorType(t)) => t
                .shape
                .as_ref()
                .expect("shape")
                .dim
                .iter()
                .map(|d| d.value.clone())
                .collect(),
            other => panic!("not a tensor type: {other:?}"),
        }
    }

    #[test]
    fn decodes_conv_model() {
        let m = ModelProto::decode(CONV_MODEL).unwrap();
        assert_eq!(m.ir_version(), 8);
        assert_eq!(m.producer_name(), "kiln-fixture");
        assert_eq!(m.opset_import.len(), 1);
        assert_eq!(m.opset_import[0].domain(), "");
        assert_eq!(m.opset_import[0].version(), 13);

        let g = m.graph.as_ref().unwrap();
        assert_eq!(g.name(), "tiny_conv");
        let ops: Vec<_> = g.node.iter().map(|n| n.op_type()).collect();
        assert_eq!(ops, ["Conv", "Relu"]);

        let conv = &g.node[0];
        assert_eq!(conv.name(), "conv0");
        assert_eq!(conv.input, ["X", "W", "B"]);
        assert_eq!(conv.output, ["Y"]);
        assert_eq!(conv.attribute.len(), 5);
        let ks = attr(conv, "kernel_shape");
        assert_eq!(ks.r#type(), AttributeType::Ints);
        assert_eq!(ks.ints, [3, 3]);
        assert_eq!(attr(conv, "pads").ints, [1, 1, 1, 1]);
        assert_eq!(attr(conv, "strides").ints, [1, 1]);
        let group = attr(conv, "group");
        assert_eq!(group.r#type(), AttributeType::Int);
        assert_eq!(group.i, Some(1));
        let auto_pad = attr(conv, "auto_pad");
        assert_eq!(auto_pad.r#type(), AttributeType::String);
        assert_eq!(auto_pad.s(), b"NOTSET");

        // Weights via raw_data (what numpy_helper.from_array writes).
        let w = init(g, "W");
        assert_eq!(w.dims, [2, 1, 3, 3]);
        assert_eq!(DataType::try_from(w.data_type()), Ok(DataType::Float));
        let raw = w.raw_data();
        assert_eq!(raw.len(), 18 * 4);
        let vals: Vec<f32> = raw
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
            .collect();
        let want: Vec<f32> = (0..18).map(|i| i as f32 * 0.5).collect();
        assert_eq!(vals, want);
        assert!(w.float_data.is_empty());

        // Bias via the packed float_data list (what make_tensor writes).
        let b = init(g, "B");
        assert_eq!(b.dims, [2]);
        assert_eq!(b.float_data, [0.25, -1.5]);
        assert!(b.raw_data.is_none());

        assert_eq!(
            dims_of(&g.input[0]),
            [
                Some(Dim::DimParam("N".into())),
                Some(Dim::DimValue(1)),
                Some(Dim::DimValue(5)),
                Some(Dim::DimValue(5)),
            ]
        );
        assert_eq!(g.output[0].name(), "Z");
        assert_eq!(dims_of(&g.output[0])[1], Some(Dim::DimValue(2)));
    }

    #[test]
    fn decodes_odd_corners() {
        let m = ModelProto::decode(ODD_MODEL).unwrap();
        assert_eq!(m.ir_version(), 9);
        let opsets: Vec<_> = m
            .opset_import
            .iter()
            .map(|o| (o.domain(), o.version()))
            .collect();
        assert_eq!(opsets, [("", 19), ("local", 1)]);
        assert_eq!(m.metadata_props.len(), 1);
        assert_eq!(m.metadata_props[0].key(), "author");
        assert_eq!(m.metadata_props[0].value(), "kiln");

        let g = m.graph.as_ref().unwrap();
        let ops: Vec<_> = g.node.iter().map(|n| n.op_type()).collect();
        assert_eq!(
            ops,
            [
                "QuantizeLinear",
                "DequantizeLinear",
                "LeakyRelu",
                "If",
                "Twice"
            ]
        );

        // `axis = 0` is written explicitly; presence survives decoding.
        let axis = attr(&g.node[0], "axis");
        assert_eq!(axis.r#type(), AttributeType::Int);
        assert_eq!(axis.i, Some(0));
        let alpha = attr(&g.node[2], "alpha");
        assert_eq!(alpha.r#type(), AttributeType::Float);
        assert_eq!(alpha.f, Some(0.5));

        // Subgraph attributes.
        let then_g = attr(&g.node[3], "then_branch");
        assert_eq!(then_g.r#type(), AttributeType::Graph);
        let then_g = then_g.g.as_ref().unwrap();
        assert_eq!(then_g.name(), "then");
        assert_eq!(then_g.node[0].op_type(), "Identity");
        let else_g = attr(&g.node[3], "else_branch").g.as_ref().unwrap();
        assert_eq!(else_g.node[0].op_type(), "Neg");

        assert_eq!(g.node[4].domain(), "local");

        // Typed payload lists.
        let s = init(g, "s");
        assert!(s.dims.is_empty());
        assert_eq!(s.float_data, [0.125]);
        let zp = init(g, "zp");
        assert_eq!(DataType::try_from(zp.data_type()), Ok(DataType::Int8));
        assert_eq!(zp.int32_data, [-3]);
        let shp = init(g, "shp");
        assert_eq!(DataType::try_from(shp.data_type()), Ok(DataType::Int64));
        assert_eq!(shp.int64_data, [-1, 4]);

        // External data.
        let ext = init(g, "ext");
        assert_eq!(ext.data_location(), DataLocation::External);
        let kv: Vec<_> = ext
            .external_data
            .iter()
            .map(|e| (e.key(), e.value()))
            .collect();
        assert_eq!(
            kv,
            [("location", "w.bin"), ("offset", "0"), ("length", "16")]
        );
        assert!(ext.raw_data.is_none());

        // Non-tensor types.
        let ty = |name: &str| {
            g.value_info
                .iter()
                .find(|v| v.name() == name)
                .and_then(|v| v.r#type.as_ref())
                .and_then(|t| t.value.as_ref())
                .unwrap()
        };
        let Ty::SequenceType(seq) = ty("seq") else {
            panic!("seq is not a sequence")
        };
        let Some(Ty::TensorType(t)) = seq.elem_type.as_ref().unwrap().value.as_ref() else {
            panic!("sequence of non-tensor")
        };
        assert_eq!(t.elem_type(), DataType::Int64 as i32);
        let Ty::OptionalType(opt) = ty("opt") else {
            panic!("opt is not optional")
        };
        let Some(Ty::TensorType(t)) = opt.elem_type.as_ref().unwrap().value.as_ref() else {
            panic!("optional of non-tensor")
        };
        assert_eq!(t.elem_type(), DataType::Float as i32);
        assert!(t.shape.is_none(), "unknown rank has no shape");
        let Ty::MapType(map) = ty("map") else {
            panic!("map is not a map")
        };
        assert_eq!(map.key_type(), DataType::String as i32);
        assert!(matches!(
            map.value_type.as_ref().unwrap().value,
            Some(Ty::TensorType(_))
        ));

        // Model-local function.
        assert_eq!(m.functions.len(), 1);
        let f = &m.functions[0];
        assert_eq!((f.domain(), f.name()), ("local", "Twice"));
        assert_eq!(f.input, ["a"]);
        assert_eq!(f.output, ["b"]);
        assert_eq!(f.node[0].op_type(), "Add");
        assert_eq!(f.opset_import[0].version(), 19);
    }

    #[test]
    fn round_trip_is_lossless_and_byte_identical() {
        for (name, bytes) in [("conv", CONV_MODEL), ("odd", ODD_MODEL)] {
            let m = ModelProto::decode(bytes).unwrap();
            let re = m.encode_to_vec();
            assert_eq!(ModelProto::decode(re.as_slice()).unwrap(), m, "{name}");
            // Same field order, presence and packing as onnx's serialiser.
            assert_eq!(re, bytes, "{name}: re-encoding differs from onnx");
        }
    }

    #[test]
    fn packing_matches_proto2_schema() {
        let t = TensorProto {
            dims: vec![2, 3],
            float_data: vec![1.0],
            ..Default::default()
        };
        // dims: unpacked, one `08 nn` per element; float_data: one packed
        // length-delimited `22 04 ...` record.
        assert_eq!(
            t.encode_to_vec(),
            [0x08, 0x02, 0x08, 0x03, 0x22, 0x04, 0x00, 0x00, 0x80, 0x3f]
        );

        let a = AttributeProto {
            ints: vec![1, 2],
            floats: vec![0.5],
            ..Default::default()
        };
        assert_eq!(
            a.encode_to_vec(),
            [0x3d, 0x00, 0x00, 0x00, 0x3f, 0x40, 0x01, 0x40, 0x02]
        );

        // Both encodings are accepted when decoding.
        let packed_dims = [0x0a, 0x02, 0x02, 0x03];
        assert_eq!(TensorProto::decode(&packed_dims[..]).unwrap().dims, [2, 3]);
    }

    #[test]
    fn unknown_fields_are_skipped() {
        // Field 99 (varint) and field 100 (length-delimited) are not in the
        // schema, at the top level and inside a nested NodeProto.
        let unknown = [0x98, 0x06, 0x2a, 0xa2, 0x06, 0x03, b'x', b'y', b'z'];
        let mut bytes = CONV_MODEL.to_vec();
        bytes.extend_from_slice(&unknown);
        assert_eq!(
            ModelProto::decode(bytes.as_slice()).unwrap(),
            ModelProto::decode(CONV_MODEL).unwrap()
        );

        let mut node = NodeProto {
            op_type: Some("Relu".into()),
            ..Default::default()
        }
        .encode_to_vec();
        node.extend_from_slice(&unknown);
        let mut graph = vec![0x0a, node.len() as u8];
        graph.extend_from_slice(&node);
        let g = GraphProto::decode(graph.as_slice()).unwrap();
        assert_eq!(g.node[0].op_type(), "Relu");
    }

    #[test]
    fn enum_values_match_schema() {
        assert_eq!(AttributeType::TypeProtos as i32, 14);
        assert_eq!(AttributeType::SparseTensors as i32, 12);
        assert_eq!(DataType::Bfloat16 as i32, 16);
        assert_eq!(DataType::Float4e2m1 as i32, 23);
        assert_eq!(DataType::try_from(1000).ok(), None);
        assert_eq!(DataLocation::External as i32, 1);
    }
}
