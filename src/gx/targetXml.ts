// Target description (qXfer:features:read:target.xml), generated from the register
// list so the XML, the `g` layout and `p`/`P` numbers can never disagree.
// Feature names and register names follow gdb's i386 features (gdb manual,
// "i386 Features"); control and debug registers go in a feature of our own.
import { Arch, RegDef } from '../vcpu/registers';

const FEATURE_NAMES: Record<RegDef['feature'], string> = {
  core: 'org.gnu.gdb.i386.core',
  sse: 'org.gnu.gdb.i386.sse',
  segments: 'org.gnu.gdb.i386.segments',
  sys: 'org.xenproject.gdbsx.sys',
};

function flags(id: string, size: number, fields: [string, number, number?][]): string {
  const f = fields.map(([n, s, e]) => `    <field name="${n}" start="${s}" end="${e ?? s}"/>`).join('\n');
  return `  <flags id="${id}" size="${size}">\n${f}\n  </flags>`;
}

const EFLAGS_TYPE = flags('i386_eflags', 4, [
  ['CF', 0], ['', 1], ['PF', 2], ['AF', 4], ['ZF', 6], ['SF', 7], ['TF', 8], ['IF', 9], ['DF', 10], ['OF', 11],
  ['NT', 14], ['RF', 16], ['VM', 17], ['AC', 18], ['VIF', 19], ['VIP', 20], ['ID', 21],
]);

const MXCSR_TYPE = flags('i386_mxcsr', 4, [
  ['IE', 0], ['DE', 1], ['ZE', 2], ['OE', 3], ['UE', 4], ['PE', 5], ['DAZ', 6], ['IM', 7], ['DM', 8], ['ZM', 9],
  ['OM', 10], ['UM', 11], ['PM', 12], ['FZ', 15],
]);

const VEC128_TYPE = `  <vector id="v8bf16" type="bfloat16" count="8"/>
  <vector id="v4f" type="ieee_single" count="4"/>
  <vector id="v2d" type="ieee_double" count="2"/>
  <vector id="v16i8" type="int8" count="16"/>
  <vector id="v8i16" type="int16" count="8"/>
  <vector id="v4i32" type="int32" count="4"/>
  <vector id="v2i64" type="int64" count="2"/>
  <union id="vec128">
    <field name="v8_bfloat16" type="v8bf16"/>
    <field name="v4_float" type="v4f"/>
    <field name="v2_double" type="v2d"/>
    <field name="v16_int8" type="v16i8"/>
    <field name="v8_int16" type="v8i16"/>
    <field name="v4_int32" type="v4i32"/>
    <field name="v2_int64" type="v2i64"/>
    <field name="uint128" type="uint128"/>
  </union>`;

function crTypes(size: number): string {
  return [
    flags('cr0_flags', size, [['PE', 0], ['MP', 1], ['EM', 2], ['TS', 3], ['ET', 4], ['NE', 5], ['WP', 16], ['AM', 18], ['NW', 29], ['CD', 30], ['PG', 31]]),
    flags('cr4_flags', size, [['VME', 0], ['PVI', 1], ['TSD', 2], ['DE', 3], ['PSE', 4], ['PAE', 5], ['MCE', 6], ['PGE', 7], ['PCE', 8],
      ['OSFXSR', 9], ['OSXMMEXCPT', 10], ['UMIP', 11], ['LA57', 12], ['FSGSBASE', 16], ['PCIDE', 17], ['OSXSAVE', 18], ['SMEP', 20], ['SMAP', 21], ['PKE', 22]]),
  ].join('\n');
}

function regXml(r: RegDef, regnum: number): string {
  const group = r.group ? ` group="${r.group}"` : '';
  return `  <reg name="${r.name}" bitsize="${r.bits}" type="${r.type}" regnum="${regnum}"${group}/>`;
}

export function targetXml(arch: Arch): string {
  const parts: string[] = ['<?xml version="1.0"?>', '<!DOCTYPE target SYSTEM "gdb-target.dtd">', '<target version="1.0">',
    `<architecture>${arch.gdbArch}</architecture>`];
  const order: RegDef['feature'][] = ['core', 'sse', 'segments', 'sys'];
  for (const feat of order) {
    const regs = arch.regs.map((r, i) => [r, i] as const).filter(([r]) => r.feature === feat);
    if (regs.length === 0) continue;
    parts.push(`<feature name="${FEATURE_NAMES[feat]}">`);
    if (feat === 'core') parts.push(EFLAGS_TYPE);
    if (feat === 'sse') parts.push(VEC128_TYPE, MXCSR_TYPE);
    if (feat === 'sys') parts.push(crTypes(arch.ptrBytes));
    for (const [r, i] of regs) parts.push(regXml(r, i));
    parts.push('</feature>');
  }
  parts.push('</target>');
  return parts.join('\n') + '\n';
}
