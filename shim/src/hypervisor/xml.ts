// A small XML writer: elements, text and comments, escaped so that any value
// (a path, a kernel command line) comes out as well-formed XML or is refused.

export type XmlAttrs = Record<string, string | number | undefined>;
export type XmlNode =
  | { tag: string; attrs?: XmlAttrs; children?: XmlNode[]; text?: string | number }
  | { comment: string };

/** An element; children are nodes, or one text value. */
export function el(tag: string, attrs: XmlAttrs = {}, content?: XmlNode[] | string | number): XmlNode {
  return Array.isArray(content) ? { tag, attrs, children: content } : content === undefined ? { tag, attrs } : { tag, attrs, text: content };
}

export const comment = (text: string): XmlNode => ({ comment: text });

// Characters XML 1.0 can carry at all; anything else (NUL, most C0 controls) has no escape.
const NOT_XML_CHAR = /[^\t\n\r\u0020-\uD7FF\uE000-\uFFFD\u{10000}-\u{10FFFF}]/u;

function checked(value: string): string {
  const bad = NOT_XML_CHAR.exec(value);
  if (bad) throw new Error(`${JSON.stringify(value)} holds U+${bad[0].codePointAt(0)!.toString(16).padStart(4, '0')}, which XML cannot carry`);
  return value;
}

export function escapeText(value: string): string {
  return checked(value).replaceAll('&', '&amp;').replaceAll('<', '&lt;').replaceAll('>', '&gt;');
}

/** For a single-quoted attribute; whitespace characters as references, or a parser would turn them into spaces. */
export function escapeAttr(value: string): string {
  return escapeText(value).replaceAll("'", '&apos;').replaceAll('"', '&quot;').replaceAll('\t', '&#9;').replaceAll('\n', '&#10;').replaceAll('\r', '&#13;');
}

/** A comment may not hold "--" (nor end in "-", which the padding space prevents): each such pair gets a space. */
export function escapeComment(value: string): string {
  return checked(value).replace(/-(?=-)/g, '- ');
}

function attrs(a: XmlAttrs | undefined): string {
  return Object.entries(a ?? {})
    .filter((e): e is [string, string | number] => e[1] !== undefined)
    .map(([k, v]) => ` ${k}='${escapeAttr(String(v))}'`)
    .join('');
}

function render(node: XmlNode, indent: string): string[] {
  if ('comment' in node) {
    const lines = escapeComment(node.comment).split('\n');
    if (lines.length === 1) return [`${indent}<!-- ${lines[0]} -->`];
    return [`${indent}<!--`, ...lines.map((l) => (l ? `${indent}  ${l}` : '')), `${indent}-->`];
  }
  const open = `${indent}<${node.tag}${attrs(node.attrs)}`;
  if (node.children?.length) return [`${open}>`, ...node.children.flatMap((c) => render(c, `${indent}  `)), `${indent}</${node.tag}>`];
  if (node.text !== undefined) return [`${open}>${escapeText(String(node.text))}</${node.tag}>`];
  return [`${open}/>`];
}

/** The document: one root element, two spaces per level, a newline at the end. */
export function renderXml(root: XmlNode): string {
  return `${render(root, '').join('\n')}\n`;
}
