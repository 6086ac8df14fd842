//! A whole model lowered to the loop dialect: kernels, constant data, the arena layout from the
//! graph's memory plan, and the schedule of kernel calls.
//!
//! Building a `Program` is where graph values get addresses: graph inputs are the caller's
//! buffers, constants (and weights packed for a kernel) are owned data, everything else is an
//! offset in one arena sized by [`kiln_graph::memory::plan`]. A node's scratch (im2col panels)
//! lives past the arena's end, shared by all nodes since they run one after another.

use crate::ir::{Kernel, Module};
use crate::lower::{self, Arg, Lowered, NodeCx};
use kiln_core::{DType, Result, Tensor, TensorType};
use kiln_graph::ops::Op;
use kiln_graph::{Graph, NodeId, Value};
use std::collections::HashMap;

/// Where a buffer lives at run time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Loc {
    /// Graph input `i` (the caller's memory).
    Input(usize),
    /// `Program::consts[i]`.
    Const(usize),
    /// Byte offset into the arena.
    Arena(usize),
}

/// One call in the schedule.
#[derive(Debug, Clone)]
pub enum Step {
    /// Call `Program::module.kernels[kernel]` with these buffers.
    Kernel { kernel: usize, args: Vec<Loc> },
    /// Run the node's reference implementation (ops without a lowering).
    Reference {
        op: Op,
        inputs: Vec<Option<(Loc, TensorType)>>,
        outputs: Vec<(Loc, TensorType)>,
    },
    /// Run host code on tensors (the int8 simulator's semantics for an op the int8
    /// lowering has no kernel for).
    Host {
        run: HostFn,
        inputs: Vec<Option<(Loc, TensorType)>>,
        outputs: Vec<(Loc, TensorType)>,
    },
}

/// The signature of host code: operand tensors in, result tensors out.
pub type HostCode = dyn Fn(&[Option<Tensor>]) -> Result<Vec<Tensor>> + Send + Sync;

/// Host code a [`Step::Host`] runs.
#[derive(Clone)]
pub struct HostFn(pub std::sync::Arc<HostCode>);

impl std::fmt::Debug for HostFn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("HostFn")
    }
}

/// Provenance of a step, for reports and profiles.
#[derive(Debug, Clone)]
pub struct StepInfo {
    /// The graph node (`%5 = conv ...` → its first result's name).
    pub node: String,
    pub op: &'static str,
    pub flops: u64,
}

#[derive(Debug, Clone, Default)]
pub struct Program {
    pub module: Module,
    /// Constant data, as raw bytes of its element type.
    pub consts: Vec<ConstData>,
    pub steps: Vec<Step>,
    pub info: Vec<StepInfo>,
    pub inputs: Vec<TensorType>,
    pub outputs: Vec<(Loc, TensorType)>,
    /// Bytes of the planned arena (graph intermediates) plus the largest scratch.
    pub arena_bytes: usize,
    /// Nodes that run through the reference implementation.
    pub reference_ops: Vec<String>,
    /// Nodes that run host code ([`Step::Host`]).
    pub host_ops: Vec<String>,
    /// Intermediate values stored as u8 codes between int8 kernels (none in fp32).
    pub coded_values: Vec<String>,
    /// Every node result as `(steps, value, where, type)`: complete once the first `steps`
    /// steps have run, in schedule order ([`crate::Compiled::run_observed`]).
    pub produced: Vec<(usize, Value, Loc, TensorType)>,
    /// The coded values' `(scale, zero point)`: their bytes are u8 codes where their type
    /// says f32, and an observer sees `f32(q − z)·s`, the value the simulator holds.
    pub decode: HashMap<Value, (f32, i32)>,
}

/// Constant bytes, kept 16-byte aligned for vector loads.
#[derive(Debug, Clone, Default)]
pub struct ConstData {
    words: Vec<u128>,
    pub bytes: usize,
}

impl ConstData {
    pub fn from_bytes(b: &[u8]) -> ConstData {
        let mut words = vec![0u128; b.len().div_ceil(16)];
        // SAFETY: u128 storage is at least as large as `b` and any byte pattern is valid.
        let dst = unsafe { std::slice::from_raw_parts_mut(words.as_mut_ptr() as *mut u8, b.len()) };
        dst.copy_from_slice(b);
        ConstData {
            words,
            bytes: b.len(),
        }
    }

    /// The f32s in memory order, as every constant and tensor of a program is stored.
    pub fn from_f32(v: &[f32]) -> ConstData {
        ConstData::from_bytes(pod_bytes(v))
    }

    pub fn ptr(&self) -> *const u8 {
        self.words.as_ptr() as *const u8
    }
}

/// Raw bytes of a tensor in its element type (row-major).
pub fn tensor_bytes(t: &Tensor) -> Vec<u8> {
    // A row-major array is one memcpy; only strided views walk element by element
    // (ndarray's dynamic-rank iterator costs nanoseconds per element, which on a small
    // model's input was a quarter of each run).
    if let Some(b) = contiguous_bytes(t) {
        return b.to_vec();
    }
    fn walk<T: Copy>(a: &ndarray::ArrayD<T>) -> Vec<u8> {
        let v: Vec<T> = a.iter().copied().collect();
        pod_bytes(&v).to_vec()
    }
    kiln_core::dispatch!(t, a => walk(a))
}

/// The memory of plain-old-data elements (numbers: every bit pattern of theirs is bytes).
fn pod_bytes<T: Copy>(v: &[T]) -> &[u8] {
    // SAFETY: the initialised elements of `v`, read as bytes; `T` is only ever a number type.
    unsafe { std::slice::from_raw_parts(v.as_ptr() as *const u8, size_of_val(v)) }
}

/// The bytes of a row-major tensor in place, without copying (`None` for a strided view).
pub fn contiguous_bytes(t: &Tensor) -> Option<&[u8]> {
    fn raw<T: Copy>(a: &ndarray::ArrayD<T>) -> Option<&[u8]> {
        Some(pod_bytes(a.as_slice()?))
    }
    kiln_core::dispatch!(t, a => raw(a))
}

/// A tensor of type `ty` from its raw row-major bytes.
pub fn tensor_from_bytes(ty: &TensorType, b: &[u8]) -> Result<Tensor> {
    fn read<T: kiln_core::Element>(shape: &[usize], b: &[u8]) -> Result<Tensor> {
        let n = b.len() / std::mem::size_of::<T>();
        let v: Vec<T> = (0..n)
            // SAFETY: `b` holds `n` elements of `T` written by a kernel or copied from a tensor
            // of this type; unaligned reads because arena offsets only promise 16 bytes.
            .map(|i| unsafe { std::ptr::read_unaligned((b.as_ptr() as *const T).add(i)) })
            .collect();
        Tensor::from_vec(shape, v)
    }
    let s = ty.shape.as_slice();
    match ty.dtype {
        DType::F32 => read::<f32>(s, b),
        DType::F64 => read::<f64>(s, b),
        DType::I8 => read::<i8>(s, b),
        DType::U8 => read::<u8>(s, b),
        DType::I16 => read::<i16>(s, b),
        DType::U16 => read::<u16>(s, b),
        DType::I32 => read::<i32>(s, b),
        DType::U32 => read::<u32>(s, b),
        DType::I64 => read::<i64>(s, b),
        DType::U64 => read::<u64>(s, b),
        DType::Bool => {
            let v: Vec<bool> = b.iter().map(|&x| x != 0).collect();
            Tensor::from_vec(s, v)
        }
    }
}

fn align(n: usize) -> usize {
    n.div_ceil(64) * 64
}

/// What one node becomes: kernels, or the reference implementation of an op.
#[derive(Debug, Clone)]
pub enum Piece {
    Kernel(Lowered),
    /// Run `op`'s reference implementation reading `inputs` (operands, or copies of them
    /// in scratch) and writing `outputs`.
    Reference {
        op: Op,
        inputs: Vec<Option<Arg>>,
        outputs: Vec<Arg>,
    },
    /// Run host code on the tensors at `inputs`, writing `outputs`.
    Host {
        run: HostFn,
        inputs: Vec<Option<Arg>>,
        outputs: Vec<Arg>,
    },
}

impl Piece {
    /// The reference implementation of `node`, on its own operands and results.
    pub fn reference(node: &kiln_graph::Node) -> Piece {
        Piece::Reference {
            op: node.op.clone(),
            inputs: (0..node.inputs().len())
                .map(|k| node.input(k).map(|_| Arg::Operand(k)))
                .collect(),
            outputs: (0..node.outputs().len()).map(Arg::Result).collect(),
        }
    }
}

/// Lowers a shape-inferred graph to a program with the fp32 lowering ([`lower::lower_op`]).
pub fn build(g: &Graph) -> Result<Program> {
    build_with(g, &mut |n, cx| {
        let node = g.node(n);
        Ok(match lower::lower_op(&node.op, cx)? {
            Some(kernels) => kernels.into_iter().map(Piece::Kernel).collect(),
            None => vec![Piece::reference(node)],
        })
    })
}

/// Lowers a shape-inferred graph with `lower_node` deciding what each (non-constant) node
/// becomes; storage, constants and the schedule are handled here.
pub fn build_with(
    g: &Graph,
    lower_node: &mut dyn FnMut(NodeId, &NodeCx) -> Result<Vec<Piece>>,
) -> Result<Program> {
    let plan = kiln_graph::memory::plan(g)?;
    let mut p = Program::default();
    let mut loc: HashMap<Value, Loc> = HashMap::new();
    for (i, &v) in g.inputs().iter().enumerate() {
        loc.insert(v, Loc::Input(i));
        p.inputs.push(g.ty(v)?.clone());
    }
    for t in &plan.tensors {
        loc.insert(t.value, Loc::Arena(t.offset));
    }
    // Graph outputs are not in the plan (they outlive the run): they follow the arena.
    let mut end = align(plan.arena_bytes);
    for &v in g.outputs() {
        if loc.contains_key(&v)
            || g.producer(v)
                .is_none_or(|n| matches!(g.node(n).op, Op::Const(_)))
        {
            continue;
        }
        loc.insert(v, Loc::Arena(end));
        end += align(g.ty(v)?.size_bytes());
    }
    let mut scratch = 0usize;
    // (step, argument, offset in scratch): resolved once the arena's end is known.
    let mut patches: Vec<(usize, Patch, usize)> = Vec::new();
    // Graph constants, copied into the program only when a step reads them as they are:
    // most weights are read packed, by lowerings that copy them themselves.
    let mut lazy: HashMap<Value, &Tensor> = HashMap::new();
    for &n in &plan.order {
        let node = g.node(n);
        if let Op::Const(c) = &node.op {
            let out = node.outputs()[0];
            let t = c.value.as_deref().ok_or_else(|| {
                kiln_core::err!(
                    InvalidModel,
                    "constant {} has no data (was its weights file loaded?)",
                    g.value(out).name
                )
            })?;
            lazy.insert(out, t);
            continue;
        }
        let ins: Vec<Option<&TensorType>> = node
            .inputs()
            .iter()
            .map(|v| v.map(|v| g.ty(v)).transpose())
            .collect::<Result<_>>()?;
        let consts: Vec<Option<&Tensor>> = node
            .inputs()
            .iter()
            .map(|v| v.and_then(|v| kiln_graph::passes::fuse_util::const_tensor(g, v)))
            .collect();
        let outs: Vec<TensorType> = node
            .outputs()
            .iter()
            .map(|&v| g.ty(v).cloned())
            .collect::<Result<_>>()?;
        let name = format!("{}_{}", node.op.name(), p.steps.len());
        let cx = NodeCx {
            name: name.clone(),
            ins: ins.clone(),
            consts,
            outs: outs.clone(),
        };
        let flops = node.op.flops(&ins, &outs);
        let info = StepInfo {
            node: g.value(node.outputs()[0]).name.clone(),
            op: node.op.name(),
            flops,
        };
        let pieces = lower_node(n, &cx).map_err(|e| node.locate(e))?;
        // Constants this node's pieces share (one `Arc` in several kernels' arguments) are
        // stored once; the pieces keep them alive, so an address names one constant.
        let mut stored: HashMap<(*const u8, usize), Loc> = HashMap::new();
        // Resolves one argument; scratch offsets are patched in once the arena is sized.
        let mut resolve = |a: &Arg, at: Patch, p: &mut Program| -> Result<Loc> {
            Ok(match a {
                Arg::Operand(k) => {
                    let v = node.input(*k).ok_or_else(|| {
                        node.locate(kiln_core::err!(InvalidModel, "missing operand {k}"))
                    })?;
                    locate(&mut loc, &lazy, p, g, node, v)?
                }
                Arg::Result(k) => locate(&mut loc, &lazy, p, g, node, node.outputs()[*k])?,
                Arg::Const(data) => {
                    let key = (data.as_ptr() as *const u8, size_of_val(&**data));
                    *stored.entry(key).or_insert_with(|| {
                        p.consts.push(ConstData::from_f32(data));
                        Loc::Const(p.consts.len() - 1)
                    })
                }
                Arg::ConstBytes(data) => {
                    let key = (data.as_ptr(), data.len());
                    *stored.entry(key).or_insert_with(|| {
                        p.consts.push(ConstData::from_bytes(data));
                        Loc::Const(p.consts.len() - 1)
                    })
                }
                Arg::Scratch(bytes) => {
                    scratch = scratch.max(align(*bytes));
                    patches.push((p.steps.len(), at, 0));
                    Loc::Arena(0)
                }
                Arg::ScratchAt(offset, bytes) => {
                    scratch = scratch.max(align(offset + bytes));
                    patches.push((p.steps.len(), at, *offset));
                    Loc::Arena(0)
                }
            })
        };
        for piece in pieces {
            match piece {
                Piece::Kernel(l) => {
                    let mut args = Vec::with_capacity(l.args.len());
                    for (i, a) in l.args.iter().enumerate() {
                        args.push(resolve(a, Patch::Arg(i), &mut p)?);
                    }
                    p.module.kernels.push(l.kernel);
                    p.steps.push(Step::Kernel {
                        kernel: p.module.kernels.len() - 1,
                        args,
                    });
                    p.info.push(info.clone());
                }
                Piece::Reference {
                    op,
                    inputs,
                    outputs,
                } => {
                    let (inputs, outputs) =
                        resolve_io(&inputs, &outputs, &ins, &outs, &mut resolve, &mut p)?;
                    p.reference_ops.push(format!("{} ({})", info.node, info.op));
                    p.steps.push(Step::Reference {
                        op,
                        inputs,
                        outputs,
                    });
                    p.info.push(info.clone());
                }
                Piece::Host {
                    run,
                    inputs,
                    outputs,
                } => {
                    let (inputs, outputs) =
                        resolve_io(&inputs, &outputs, &ins, &outs, &mut resolve, &mut p)?;
                    p.host_ops.push(format!("{} ({})", info.node, info.op));
                    p.steps.push(Step::Host {
                        run,
                        inputs,
                        outputs,
                    });
                    p.info.push(info.clone());
                }
            }
        }
        for (&v, ty) in node.outputs().iter().zip(&outs) {
            let l = locate(&mut loc, &lazy, &mut p, g, node, v)?;
            p.produced.push((p.steps.len(), v, l, ty.clone()));
        }
    }
    // Scratch sits after the planned tensors.
    let scratch_at = end;
    for (step, at, offset) in patches {
        let l = Loc::Arena(scratch_at + offset);
        match (&mut p.steps[step], at) {
            (Step::Kernel { args, .. }, Patch::Arg(i)) => args[i] = l,
            (Step::Reference { inputs, .. } | Step::Host { inputs, .. }, Patch::Input(k)) => {
                if let Some((loc, _)) = &mut inputs[k] {
                    *loc = l;
                }
            }
            (Step::Reference { outputs, .. } | Step::Host { outputs, .. }, Patch::Output(k)) => {
                outputs[k].0 = l
            }
            _ => {}
        }
    }
    p.arena_bytes = scratch_at + scratch;
    for &v in g.outputs() {
        let l = place(&mut loc, &lazy, &mut p, v).ok_or_else(|| {
            kiln_core::err!(InvalidModel, "output {} has no storage", g.value(v).name)
        })?;
        p.outputs.push((l, g.ty(v)?.clone()));
    }
    Ok(p)
}

type IoLocs = (Vec<Option<(Loc, TensorType)>>, Vec<(Loc, TensorType)>);

/// Locations of a host or reference step's tensors.
fn resolve_io(
    inputs: &[Option<Arg>],
    outputs: &[Arg],
    ins: &[Option<&TensorType>],
    outs: &[TensorType],
    resolve: &mut dyn FnMut(&Arg, Patch, &mut Program) -> Result<Loc>,
    p: &mut Program,
) -> Result<IoLocs> {
    let mut rin = Vec::with_capacity(inputs.len());
    for (k, a) in inputs.iter().enumerate() {
        rin.push(match (a, ins.get(k).copied().flatten()) {
            (Some(a), Some(t)) => Some((resolve(a, Patch::Input(k), p)?, t.clone())),
            _ => None,
        });
    }
    let mut rout = Vec::with_capacity(outputs.len());
    for (k, a) in outputs.iter().enumerate() {
        rout.push((resolve(a, Patch::Output(k), p)?, outs[k].clone()));
    }
    Ok((rin, rout))
}

/// Which slot of a step a scratch location fills.
#[derive(Debug, Clone, Copy)]
enum Patch {
    Arg(usize),
    Input(usize),
    Output(usize),
}

/// Where `v` lives; a graph constant is copied into the program the first time it is asked for.
fn place(
    loc: &mut HashMap<Value, Loc>,
    lazy: &HashMap<Value, &Tensor>,
    p: &mut Program,
    v: Value,
) -> Option<Loc> {
    if let Some(&l) = loc.get(&v) {
        return Some(l);
    }
    let t = lazy.get(&v)?;
    p.consts.push(ConstData::from_bytes(&tensor_bytes(t)));
    let l = Loc::Const(p.consts.len() - 1);
    loc.insert(v, l);
    Some(l)
}

fn locate(
    loc: &mut HashMap<Value, Loc>,
    lazy: &HashMap<Value, &Tensor>,
    p: &mut Program,
    g: &Graph,
    node: &kiln_graph::Node,
    v: Value,
) -> Result<Loc> {
    place(loc, lazy, p, v).ok_or_else(|| {
        node.locate(kiln_core::err!(
            InvalidModel,
            "value {} has no storage",
            g.value(v).name
        ))
    })
}

impl Program {
    pub fn kernels(&self) -> &[Kernel] {
        &self.module.kernels
    }
}
