/**
 * Small controls the islands share, so a table row or a form looks and behaves the same on every
 * page: the enabled switch, a key's weight, a destructive button that asks once more, and a form's
 * save button with the outcome of the last save.
 */
import { useT } from "../../lib/ui/i18n.ts";

/** An on/off switch for the row of `name`. */
export function EnabledSwitch(
  props: { checked: boolean; name: string; onChange: (checked: boolean) => void },
) {
  const t = useT();
  return (
    <input
      type="checkbox"
      class="switch"
      role="switch"
      checked={props.checked}
      aria-label={`${t("common.enabled")} ${props.name}`}
      onChange={(e) => props.onChange(e.currentTarget.checked)}
    />
  );
}

/** The weight (1 to 100) of the key shown as `name`; `onChange` gets whole numbers only. */
export function WeightInput(
  props: { weight: number; name: string; onChange: (weight: number) => void },
) {
  const t = useT();
  return (
    <input
      type="number"
      class="input-narrow"
      min={1}
      max={100}
      value={props.weight}
      aria-label={`${t("keys.weight")} ${props.name}`}
      onChange={(e) => {
        const w = Number(e.currentTarget.value);
        if (Number.isInteger(w)) props.onChange(w);
      }}
    />
  );
}

/** Props of `ConfirmButton`. */
export interface ConfirmButtonProps {
  /** Whether it was clicked once: it now asks for the confirming click. */
  armed: boolean;
  label: string;
  /** The armed button's text; "Confirm delete" by default. */
  confirmLabel?: string;
  /** The accessible name of the unarmed button, when the label alone is ambiguous. */
  ariaLabel?: string;
  /** Disables the unarmed button. */
  disabled?: boolean;
  onArm: () => void;
  onConfirm: () => void;
  /** When given, a Cancel button stands next to the armed one. */
  onCancel?: () => void;
}

/** A danger button that acts only on a second, confirming click. */
export function ConfirmButton(props: ConfirmButtonProps) {
  const t = useT();
  if (!props.armed) {
    return (
      <button
        type="button"
        class="btn btn-small btn-danger"
        disabled={props.disabled}
        aria-label={props.ariaLabel}
        onClick={() => props.onArm()}
      >
        {props.label}
      </button>
    );
  }
  return (
    <>
      <button type="button" class="btn btn-small btn-danger" onClick={() => props.onConfirm()}>
        {props.confirmLabel ?? t("common.confirmDelete")}
      </button>
      {props.onCancel
        ? (
          <button type="button" class="btn btn-small" onClick={() => props.onCancel?.()}>
            {t("common.cancel")}
          </button>
        )
        : null}
    </>
  );
}

/** What the last save of a form led to. */
export type SaveStatus = { kind: "ok" | "bad"; text: string } | null;

/** A form's submit button ("Saving…" while busy) and the outcome of its last save. */
export function SaveControls(props: { saving: boolean; status: SaveStatus; disabled?: boolean }) {
  const t = useT();
  return (
    <>
      <button type="submit" class="btn btn-primary" disabled={props.saving || !!props.disabled}>
        {props.saving ? t("common.saving") : t("common.save")}
      </button>
      {props.status
        ? (
          <span class={props.status.kind === "ok" ? "muted" : "notice notice-bad"} role="status">
            {props.status.text}
          </span>
        )
        : null}
    </>
  );
}
