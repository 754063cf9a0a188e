// Greet: takes JSON like {"name": "Ada"} (or just "Ada") and returns
// {"greeting": "Hello, Ada!"}. Morel wraps `handle` in its core ABI: the input arrives as
// JSON text and the returned string is the JSON output.

export function handle(input: string): string {
  let name = stringAfterKey(input, "name");
  if (name == null) name = jsonString(input.trim(), 0);
  if (name == null || name!.length == 0) name = "world";
  return '{"greeting": ' + quote("Hello, " + name! + "!") + "}";
}

// The string value of `"key": "…"` anywhere in the text (small inputs, no nesting rules).
function stringAfterKey(text: string, key: string): string | null {
  const at = text.indexOf('"' + key + '"');
  if (at < 0) return null;
  let i = at + key.length + 2;
  while (i < text.length && (text.charAt(i) == " " || text.charAt(i) == ":")) i++;
  return jsonString(text, i);
}

// Decodes the JSON string starting at `start`, or null if there is none.
function jsonString(text: string, start: i32): string | null {
  if (start >= text.length || text.charAt(start) != '"') return null;
  let out = "";
  for (let i = start + 1; i < text.length; i++) {
    const c = text.charAt(i);
    if (c == '"') return out;
    if (c == "\\" && i + 1 < text.length) {
      i++;
      const e = text.charAt(i);
      if (e == "n") out += "\n";
      else if (e == "t") out += "\t";
      else if (e == "u" && i + 4 < text.length) {
        out += String.fromCharCode(<i32>parseInt(text.substr(i + 1, 4), 16));
        i += 4;
      } else out += e;
    } else {
      out += c;
    }
  }
  return null;
}

// Encodes a string as a JSON string literal.
function quote(s: string): string {
  let out = '"';
  for (let i = 0; i < s.length; i++) {
    const code = s.charCodeAt(i);
    if (code == 0x22) out += '\\"';
    else if (code == 0x5c) out += "\\\\";
    else if (code == 0x0a) out += "\\n";
    else if (code < 0x20) out += "\\u" + code.toString(16).padStart(4, "0");
    else out += s.charAt(i);
  }
  return out + '"';
}
