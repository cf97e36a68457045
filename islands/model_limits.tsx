/**
 * Island: the pool's effective limits per model, reloaded whenever another island of the page
 * changes what they are made of (a model's per-key limits, a project's overrides).
 */
import { useSignal } from "@preact/signals";
import { useEffect } from "preact/hooks";
import { api, errorMessage } from "../lib/ui/api.ts";
import { onLimitsChanged } from "../lib/ui/events.ts";
import { useT } from "../lib/ui/i18n.ts";
import type { EffectiveLimit } from "../lib/ui/wire.ts";
import { LimitsTable } from "./components/limits_table.tsx";

/** Props of `ModelLimits`. */
export interface ModelLimitsProps {
  limits: EffectiveLimit[];
}

/** The effective limits table, kept current. */
export function ModelLimits(props: ModelLimitsProps) {
  const t = useT();
  const limits = useSignal(props.limits);
  const error = useSignal<string | null>(null);
  useEffect(() => {
    // Only the newest reload is shown: answers to quick successive changes may come out of order.
    let latest = 0;
    return onLimitsChanged(async () => {
      const mine = ++latest;
      try {
        const res = await api<{ data: EffectiveLimit[] }>("GET", "/admin/api/limits?scopes=0");
        if (mine !== latest) return;
        limits.value = res.data;
        error.value = null;
      } catch (err) {
        if (mine === latest) error.value = t("common.error", { message: errorMessage(err) });
      }
    });
  }, []);
  return (
    <div>
      {error.value ? <div class="notice notice-bad" role="alert">{error.value}</div> : null}
      <LimitsTable limits={limits.value} />
    </div>
  );
}
