/**
 * Island: a button that copies a text to the clipboard (with a fallback for plain-http pages where
 * the Clipboard API is unavailable) and says whether it worked.
 */
import { useSignal } from "@preact/signals";
import { useT } from "../lib/ui/i18n.ts";

/** Props of `CopyButton`. */
export interface CopyButtonProps {
  text: string;
  /** What is copied, for screen readers (e.g. "Copy base URL"). */
  label?: string;
  class?: string;
}

function fallbackCopy(text: string): boolean {
  const area = document.createElement("textarea");
  area.value = text;
  area.setAttribute("readonly", "");
  area.className = "visually-hidden";
  document.body.appendChild(area);
  area.select();
  let ok = false;
  try {
    ok = document.execCommand("copy");
  } catch {
    ok = false;
  }
  area.remove();
  return ok;
}

/** Copies `text` when pressed. */
export function CopyButton(props: CopyButtonProps) {
  const t = useT();
  const state = useSignal<"idle" | "copied" | "failed">("idle");
  async function copy() {
    let ok = false;
    try {
      await navigator.clipboard.writeText(props.text);
      ok = true;
    } catch {
      ok = fallbackCopy(props.text);
    }
    state.value = ok ? "copied" : "failed";
    setTimeout(() => (state.value = "idle"), 2500);
  }
  const text = state.value === "copied"
    ? t("common.copied")
    : state.value === "failed"
    ? t("common.copyFailed")
    : t("common.copy");
  return (
    <button
      type="button"
      class={`btn btn-small ${props.class ?? ""}`}
      onClick={copy}
      aria-label={state.value === "idle" && props.label ? props.label : undefined}
      data-copy-state={state.value}
    >
      <span aria-live="polite">{text}</span>
    </button>
  );
}
