// A form generated from a JSON Schema (draft 2020-12, as taskloom's tasks publish them).
//
// Scalars get inputs, enums a select, booleans a checkbox, nested objects a fieldset, lists
// and free-form objects a JSON text area. The form does not judge the values: it sends what
// was typed and shows, next to each field, the message the server returns for it (a 422
// names every invalid field), so the rules live in one place, the task's own validation.

import { h, replace } from "./dom.js";

/** Follow `$ref`s into `$defs` and unwrap `anyOf: [X, {type: "null"}]` (optional fields). */
function resolve(schema, root) {
  let current = schema ?? {};
  for (let depth = 0; depth < 16 && typeof current.$ref === "string"; depth++) {
    const path = current.$ref.replace(/^#\//, "").split("/");
    let target = root;
    for (const part of path) target = target?.[part];
    const { $ref, ...rest } = current;
    current = { ...(target ?? {}), ...rest };
  }
  const options = current.anyOf ?? current.oneOf;
  if (Array.isArray(options)) {
    const others = options.filter((option) => option?.type !== "null");
    if (others.length === 1) {
      const { anyOf, oneOf, ...rest } = current;
      return { ...resolve(others[0], root), ...rest, nullable: others.length < options.length };
    }
  }
  return current;
}

function typeOf(schema) {
  if (Array.isArray(schema.enum)) return "enum";
  if ("const" in schema) return "const";
  const type = Array.isArray(schema.type) ? schema.type.find((t) => t !== "null") : schema.type;
  if (type === "object" && schema.properties) return "object";
  if (type === "object" || type === "array") return "json";
  if (["string", "integer", "number", "boolean"].includes(type)) return type;
  return "json"; // unions and anything else: typed as JSON
}

function typeLabel(schema, kind) {
  if (kind === "enum") return "choice";
  if (kind === "json") return Array.isArray(schema.type) ? schema.type.join(" | ") : schema.type ?? "JSON";
  return kind;
}

/** "a.b[2]" -> "a.b" -> "a" -> "". */
function parentPath(path) {
  const match = path.match(/^(.*?)(\.[^.[\]]+|\[\d+\])$/);
  return match ? match[1] : "";
}

function idFor(prefix, path) {
  return `${prefix}-${path.replace(/[^A-Za-z0-9_-]/g, "_")}`;
}

/**
 * Build a form for `schema` inside `container`.
 * Returns {values(), setErrors(errors), clearErrors(), setValues(values), edited()}:
 * `values()` gives {ok, value} where `ok` is false when a JSON field does not parse (its
 * message is shown at once); `setValues` shows new values (the live attributes of a
 * service, say) in the fields a person has not edited since; `edited()` names those.
 */
export function schemaForm(container, schema, { prefix = "field" } = {}) {
  const root = schema ?? {};
  const fields = new Map(); // dotted path -> {read(), write(value), field, message, edited}
  const topError = h("p", { class: "form-error", role: "alert" });

  function build(objectSchema, path) {
    const resolved = resolve(objectSchema, root);
    const required = new Set(resolved.required ?? []);
    const nodes = [];
    for (const [name, property] of Object.entries(resolved.properties ?? {})) {
      nodes.push(buildField(name, property, path ? `${path}.${name}` : name, required.has(name)));
    }
    return nodes;
  }

  function buildField(name, property, path, required) {
    const schemaOf = resolve(property, root);
    const kind = typeOf(schemaOf);
    const id = idFor(prefix, path);
    const label = schemaOf.title && schemaOf.title.toLowerCase() !== name.toLowerCase() ? schemaOf.title : name;
    const hint = schemaOf.description ? h("span", { class: "hint", id: `${id}-hint` }, schemaOf.description) : null;
    const message = h("span", { class: "message", id: `${id}-message`, "aria-live": "polite" });

    if (kind === "object") {
      const box = h(
        "fieldset",
        { "data-field": path },
        h("legend", {}, label, required ? h("span", { class: "required", title: "required" }, "*") : null),
        hint,
        build(schemaOf, path),
        message,
      );
      fields.set(path, { field: box, message, read: () => ({ skip: true }) });
      return box;
    }

    const described = [hint ? `${id}-hint` : null, `${id}-message`].filter(Boolean).join(" ");
    const common = { id, name: path, "aria-describedby": described, "data-field": path };
    const hasDefault = "default" in schemaOf;
    let input;
    let read;
    let write = () => {};

    if (kind === "boolean") {
      input = h("input", { ...common, type: "checkbox", checked: schemaOf.default === true });
      read = () => ({ value: input.checked });
      const field = h(
        "div",
        { class: "field check" },
        input,
        h("label", { for: id }, label, h("span", { class: "type" }, "boolean")),
        hint,
        message,
      );
      const entry = { field, message, read, write: (value) => (input.checked = value === true), edited: false };
      input.addEventListener("change", () => (entry.edited = true));
      fields.set(path, entry);
      return field;
    }

    if (kind === "enum" || kind === "const") {
      const choices = kind === "enum" ? schemaOf.enum : [schemaOf.const];
      const blank = !required || !hasDefault ? [h("option", { value: "" }, required ? "choose…" : "(default)")] : [];
      input = h(
        "select",
        common,
        blank,
        choices.map((choice, index) =>
          h("option", { value: String(index), selected: hasDefault && schemaOf.default === choice }, String(choice)),
        ),
      );
      if (!hasDefault && required) input.value = "";
      read = () => (input.value === "" ? { skip: true } : { value: choices[Number(input.value)] });
      write = (value) => {
        const index = choices.findIndex((choice) => choice === value);
        input.value = index < 0 ? "" : String(index);
      };
    } else if (kind === "json") {
      input = h("textarea", {
        ...common,
        rows: 3,
        spellcheck: false,
        placeholder: schemaOf.type === "array" ? "[ ]  JSON list" : "JSON",
      });
      if (hasDefault) input.value = JSON.stringify(schemaOf.default);
      write = (value) => (input.value = value === undefined ? "" : JSON.stringify(value));
      read = () => {
        if (input.value.trim() === "") return { skip: true };
        try {
          return { value: JSON.parse(input.value) };
        } catch (error) {
          return { invalid: `not valid JSON: ${error.message}` };
        }
      };
    } else {
      const numeric = kind === "integer" || kind === "number";
      input = h("input", {
        ...common,
        type: "text",
        inputmode: kind === "integer" ? "numeric" : numeric ? "decimal" : null,
        autocomplete: "off",
        placeholder: hasDefault ? `default: ${schemaOf.default}` : "",
      });
      if (hasDefault && schemaOf.default !== null) input.value = String(schemaOf.default);
      write = (value) => (input.value = value === null || value === undefined ? "" : String(value));
      read = () => {
        const text = input.value;
        if (text === "") return kind === "string" && required && !hasDefault ? { value: "" } : { skip: true };
        // A number that reads as one is sent as a number; anything else is sent as typed,
        // so the server's message can quote it.
        if (numeric && text.trim() !== "" && Number.isFinite(Number(text))) return { value: Number(text) };
        return { value: text };
      };
    }

    const field = h(
      "div",
      { class: "field" },
      h(
        "label",
        { for: id },
        label,
        required ? h("span", { class: "required", title: "required" }, "*") : null,
        h("span", { class: "type" }, typeLabel(schemaOf, kind)),
      ),
      input,
      hint,
      message,
    );
    const entry = { field, message, read, write, edited: false };
    input.addEventListener("input", () => {
      entry.edited = true;
      clearField(path);
    });
    input.addEventListener("change", () => (entry.edited = true));
    fields.set(path, entry);
    return field;
  }

  function clearField(path) {
    const entry = fields.get(path);
    if (!entry) return;
    entry.field.classList.remove("invalid");
    entry.message.textContent = "";
    entry.field.querySelector("[aria-invalid]")?.removeAttribute("aria-invalid");
  }

  function clearErrors() {
    for (const path of fields.keys()) clearField(path);
    topError.textContent = "";
  }

  function showError(path, text) {
    // The server may name a field inside a list or deeper than the form goes
    // ("items[2]", "point.x.y"): the message goes to the nearest field the form has.
    let target = path;
    while (target && !fields.has(target)) target = parentPath(target);
    const entry = fields.get(target);
    if (!entry) {
      topError.textContent = [topError.textContent, path && path !== "(inputs)" ? `${path}: ${text}` : text]
        .filter(Boolean)
        .join("\n");
      return;
    }
    entry.field.classList.add("invalid");
    entry.message.textContent = [entry.message.textContent, target === path ? text : `${path}: ${text}`]
      .filter(Boolean)
      .join("; ");
    entry.field.querySelector("input, select, textarea")?.setAttribute("aria-invalid", "true");
  }

  function setErrors(errors) {
    clearErrors();
    for (const error of errors) showError(error.field, error.message);
    const first = container.querySelector(".invalid input, .invalid select, .invalid textarea");
    first?.focus();
  }

  function values() {
    const result = {};
    let ok = true;
    for (const [path, entry] of fields) {
      const got = entry.read();
      if (got.skip) continue;
      if (got.invalid) {
        ok = false;
        showError(path, got.invalid);
        continue;
      }
      // Put the value at its dotted path, making the objects on the way.
      const parts = path.split(".");
      let target = result;
      for (const part of parts.slice(0, -1)) target = target[part] ??= {};
      target[parts.at(-1)] = got.value;
    }
    return { ok, value: result };
  }

  /** Show `values` (by top-level name) in the fields; an edited one keeps what was typed
   * unless `force` (after the values were sent, say). */
  function setValues(values, { force = false } = {}) {
    for (const [name, value] of Object.entries(values ?? {})) {
      const entry = fields.get(name);
      if (!entry || (entry.edited && !force)) continue;
      entry.write(value);
      entry.edited = false;
      entry.field.dataset.value = JSON.stringify(value);
    }
  }

  function edited() {
    return [...fields].filter(([, entry]) => entry.edited).map(([path]) => path);
  }

  const body = build(root, "");
  replace(
    container,
    body.length ? body : h("p", { class: "muted" }, "This task takes no inputs."),
    topError,
  );
  return { values, setErrors, clearErrors, setValues, edited };
}
