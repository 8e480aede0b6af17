// The subset of XML 1.0 that libvirt reads and writes: elements, attributes, text, comments,
// processing instructions and CDATA; no DOCTYPE, so no entity definitions and nothing to expand
// beyond the five predefined entities and character references. Hand-written because a serializer
// and a parser of this subset are shorter than the glue around a dependency.

export interface XmlElement {
  readonly name: string;
  readonly attributes: Readonly<Partial<Record<string, string>>>;
  readonly children: readonly XmlNode[];
}

export type XmlNode = XmlElement | string;

const NAME = /^[A-Za-z_:\u00C0-\uFFEF][-A-Za-z0-9._:\u00B7\u00C0-\uFFEF]*$/;

// Characters XML 1.0 cannot carry at all, not even as character references (section 2.2).
const NOT_XML_CHAR =
  /[\u0000-\u0008\u000B\u000C\u000E-\u001F\uFFFE\uFFFF]|[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;

/** True when `text` can be written into an XML 1.0 document. */
export function isXmlText(text: string): boolean {
  return !NOT_XML_CHAR.test(text);
}

/** Builds an element; undefined attributes and undefined/false/empty children are left out. */
export function element(
  name: string,
  attributes: Record<string, string | number | undefined> = {},
  children: readonly (XmlNode | undefined | false)[] = [],
): XmlElement {
  const attrs: Record<string, string> = {};
  for (const [key, value] of Object.entries(attributes)) if (value !== undefined) attrs[key] = String(value);
  const kept = children.filter((c): c is XmlNode => c !== undefined && c !== false && c !== "");
  return { name, attributes: attrs, children: kept };
}

// ---------------------------------------------------------------------------------------------
// Serializer

function checkedText(text: string): string {
  if (!isXmlText(text)) throw new Error(`cannot write ${JSON.stringify(text)} into XML: it contains a character XML 1.0 forbids`);
  return text;
}

function escapeText(text: string): string {
  // \r is escaped because parsers turn a literal \r (or \r\n) into \n.
  return checkedText(text).replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;").replace(/\r/g, "&#13;");
}

function escapeAttribute(value: string): string {
  // Literal tabs and newlines in attribute values become spaces when parsed (attribute-value normalisation).
  return checkedText(value)
    .replace(/&/g, "&amp;")
    .replace(/</g, "&lt;")
    .replace(/>/g, "&gt;")
    .replace(/"/g, "&quot;")
    .replace(/\t/g, "&#9;")
    .replace(/\n/g, "&#10;")
    .replace(/\r/g, "&#13;");
}

function checkedName(name: string): string {
  if (!NAME.test(name)) throw new Error(`${JSON.stringify(name)} is not an XML name`);
  return name;
}

function openTag(e: XmlElement): string {
  const attrs = Object.entries(e.attributes)
    .filter((entry): entry is [string, string] => entry[1] !== undefined)
    .map(([key, value]) => ` ${checkedName(key)}="${escapeAttribute(value)}"`)
    .join("");
  return `<${checkedName(e.name)}${attrs}`;
}

function renderInline(e: XmlElement): string {
  if (e.children.length === 0) return `${openTag(e)}/>`;
  const inner = e.children.map((c) => (typeof c === "string" ? escapeText(c) : renderInline(c))).join("");
  return `${openTag(e)}>${inner}</${e.name}>`;
}

function renderIndented(e: XmlElement, indent: string): string {
  // Indentation is only added between elements, never next to text, so text round-trips exactly.
  if (e.children.length === 0 || e.children.some((c) => typeof c === "string")) return indent + renderInline(e);
  const inner = e.children.map((c) => renderIndented(c as XmlElement, indent + "  ")).join("\n");
  return `${indent}${openTag(e)}>\n${inner}\n${indent}</${e.name}>`;
}

/** Serializes `root` as an indented document with a trailing newline. */
export function renderXml(root: XmlElement): string {
  return renderIndented(root, "") + "\n";
}

// ---------------------------------------------------------------------------------------------
// Parser

const PREDEFINED: Record<string, string> = { lt: "<", gt: ">", amp: "&", quot: '"', apos: "'" };
const REFERENCE = /&(?:#x([0-9A-Fa-f]+)|#([0-9]+)|([A-Za-z]+));/g;
const BAD_AMPERSAND = /&(?!(?:#x[0-9A-Fa-f]+|#[0-9]+|lt|gt|amp|quot|apos);)/;

/** Parses a document; throws with line and column on anything outside the subset above. */
export function parseXml(text: string): XmlElement {
  // XML end-of-line handling (section 2.11) happens before anything else.
  const src = text.replace(/\r\n?/g, "\n");
  let pos = src.startsWith("\uFEFF") ? 1 : 0;

  const fail = (message: string): never => {
    const before = src.slice(0, pos).split("\n");
    throw new Error(`XML parse error at line ${before.length}, column ${before[before.length - 1].length + 1}: ${message}`);
  };
  const skipSpace = (): boolean => {
    const start = pos;
    while (pos < src.length && " \t\n".includes(src[pos])) pos++;
    return pos > start;
  };
  const skipPast = (terminator: string, what: string): string => {
    const end = src.indexOf(terminator, pos);
    if (end < 0) fail(`unterminated ${what}`);
    const body = src.slice(pos, end);
    pos = end + terminator.length;
    return body;
  };
  const readName = (): string => {
    const match = /^[^\s/>=<"'!?]+/.exec(src.slice(pos, pos + 1024));
    if (!match || !NAME.test(match[0])) fail("expected a name");
    pos += match![0].length;
    return match![0];
  };
  const decode = (raw: string): string => {
    if (!isXmlText(raw)) fail("a character XML 1.0 forbids");
    if (BAD_AMPERSAND.test(raw)) fail(`a bare "&" or an entity other than &lt; &gt; &amp; &quot; &apos;`);
    return raw.replace(REFERENCE, (_m, hex: string | undefined, dec: string | undefined, named: string | undefined) => {
      if (named !== undefined) return PREDEFINED[named];
      const code = parseInt(hex ?? dec!, hex !== undefined ? 16 : 10);
      const char = code <= 0x10ffff ? String.fromCodePoint(code) : "";
      if (char === "" || !isXmlText(char)) fail(`character reference to U+${code.toString(16)}, which XML 1.0 forbids`);
      return char;
    });
  };
  // Comments, processing instructions and whitespace outside the root element.
  const skipMisc = (): void => {
    for (;;) {
      skipSpace();
      if (src.startsWith("<?", pos)) {
        pos += 2;
        skipPast("?>", "processing instruction");
      } else if (src.startsWith("<!--", pos)) {
        pos += 4;
        skipPast("-->", "comment");
      } else if (src.startsWith("<!DOCTYPE", pos)) {
        fail("DOCTYPE is not supported (libvirt never writes one)");
      } else return;
    }
  };

  const parseElement = (): XmlElement => {
    pos++; // "<"
    const name = readName();
    const attributes: Record<string, string> = {};
    for (;;) {
      const spaced = skipSpace();
      if (src.startsWith("/>", pos)) {
        pos += 2;
        return { name, attributes, children: [] };
      }
      if (src[pos] === ">") {
        pos++;
        break;
      }
      if (!spaced) fail(`expected whitespace, ">" or "/>" in <${name}>`);
      const key = readName();
      skipSpace();
      if (src[pos] !== "=") fail(`expected "=" after attribute ${key}`);
      pos++;
      skipSpace();
      const quote = src[pos];
      if (quote !== '"' && quote !== "'") fail(`expected a quoted value for attribute ${key}`);
      pos++;
      const raw = skipPast(quote, `value of attribute ${key}`);
      if (raw.includes("<")) fail(`"<" in the value of attribute ${key}`);
      if (Object.prototype.hasOwnProperty.call(attributes, key)) fail(`attribute ${key} appears twice`);
      attributes[key] = decode(raw.replace(/[\t\n]/g, " "));
    }

    const children: XmlNode[] = [];
    let text = "";
    const flushText = () => {
      if (text !== "") children.push(text);
      text = "";
    };
    for (;;) {
      if (pos >= src.length) fail(`missing </${name}>`);
      if (src.startsWith("</", pos)) {
        pos += 2;
        const closing = readName();
        skipSpace();
        if (src[pos] !== ">" || closing !== name) fail(`expected </${name}>`);
        pos++;
        break;
      } else if (src.startsWith("<!--", pos)) {
        pos += 4;
        skipPast("-->", "comment");
      } else if (src.startsWith("<![CDATA[", pos)) {
        pos += 9;
        const raw = skipPast("]]>", "CDATA section");
        if (!isXmlText(raw)) fail("a character XML 1.0 forbids");
        text += raw;
      } else if (src.startsWith("<?", pos)) {
        pos += 2;
        skipPast("?>", "processing instruction");
      } else if (src[pos] === "<") {
        flushText();
        children.push(parseElement());
      } else {
        const end = src.indexOf("<", pos);
        const raw = src.slice(pos, end < 0 ? src.length : end);
        if (raw.includes("]]>")) fail(`"]]>" in text`);
        text += decode(raw);
        pos += raw.length;
      }
    }
    flushText();
    // Whitespace between child elements is indentation, not content.
    const hasElements = children.some((c) => typeof c !== "string");
    return { name, attributes, children: hasElements ? children.filter((c) => typeof c !== "string" || c.trim() !== "") : children };
  };

  skipMisc();
  if (src[pos] !== "<") fail("expected the root element");
  const root = parseElement();
  skipMisc();
  if (pos < src.length) fail("content after the root element");
  return root;
}

// ---------------------------------------------------------------------------------------------
// Queries: a path is child element names separated by "/", relative to `from`.

/** Every element reached by following `path` from `from`. */
export function findAll(from: XmlElement, path: string): XmlElement[] {
  let current: XmlElement[] = [from];
  for (const step of path.split("/")) {
    current = current.flatMap((e) => e.children.filter((c): c is XmlElement => typeof c !== "string" && c.name === step));
  }
  return current;
}

/** The first element reached by following `path` from `from`. */
export function find(from: XmlElement, path: string): XmlElement | undefined {
  return findAll(from, path)[0];
}

/** The text directly inside `e` (child elements are skipped). */
export function textOf(e: XmlElement | undefined): string {
  return e ? e.children.filter((c): c is string => typeof c === "string").join("") : "";
}
