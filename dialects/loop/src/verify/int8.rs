//! Type rules of the int8 instructions (`dot_u8s8`, `narrow_u8`, `widen_u8`). Each has one
//! fixed signature; the byte vectors are `i8x16` whichever signedness the instruction reads
//! them with, because signedness is a property of the instruction, not of the register.

use super::Verifier;
use crate::ir::*;
use kiln_core::Result;

impl Verifier<'_> {
    /// Checks the operand and result types of an int8 instruction (`rt`: its result type).
    pub(super) fn int8_types(&self, inst: &Inst, rt: Type) -> Result<()> {
        let (name, want_result, operands): (&str, Type, Vec<(String, Val, Type)>) = match &inst.kind
        {
            InstKind::DotU8S8(acc, a, b) => (
                "dot_u8s8",
                Type::I32X4,
                vec![
                    ("the accumulator".into(), *acc, Type::I32X4),
                    ("the u8 operand".into(), *a, Type::I8X16),
                    ("the s8 operand".into(), *b, Type::I8X16),
                ],
            ),
            InstKind::NarrowU8(vs) => (
                "narrow_u8",
                Type::I8X16,
                vs.iter()
                    .enumerate()
                    .map(|(i, &v)| (format!("operand {}", i + 1), v, Type::I32X4))
                    .collect(),
            ),
            InstKind::Shuffle(a, b, m) => {
                check!(
                    self,
                    inst,
                    m.iter().all(|&i| i < 32),
                    "shuffle index past the 32 bytes of its two operands"
                );
                (
                    "shuffle",
                    Type::I8X16,
                    vec![
                        ("the first operand".into(), *a, Type::I8X16),
                        ("the second operand".into(), *b, Type::I8X16),
                    ],
                )
            }
            InstKind::WidenU8(v, part) => {
                check!(
                    self,
                    inst,
                    *part < 4,
                    "part {part} of an i8x16 (its 16 bytes are parts 0 to 3 of 4 bytes)"
                );
                (
                    "widen_u8",
                    Type::I32X4,
                    vec![("the operand".into(), *v, Type::I8X16)],
                )
            }
            _ => return Ok(()),
        };
        for (what, v, want) in operands {
            let got = self.ty(v);
            check!(
                self,
                inst,
                got == want,
                "{what} {} has type {got}, but {name} takes {want}",
                self.names.val(v)
            );
        }
        check!(
            self,
            inst,
            rt == want_result,
            "the result has type {rt}, but {name} gives {want_result}"
        );
        Ok(())
    }
}
