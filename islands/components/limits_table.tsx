/**
 * The pool's effective limits per model: the sum over usable quota scopes, and the multiplier
 * (how many scopes count: keys of one Google Cloud project count once).
 */
import { formatCount } from "../../lib/ui/format.ts";
import { useT } from "../../lib/ui/i18n.ts";
import type { EffectiveLimit } from "../../lib/ui/wire.ts";

/** Props of `LimitsTable`. */
export interface LimitsTableProps {
  limits: EffectiveLimit[];
}

/** A table of effective limits. */
export function LimitsTable(props: LimitsTableProps) {
  const t = useT();
  const n = (v: number | null) => (v === null ? t("common.unlimited") : formatCount(v, t.lang));
  if (!props.limits.length) return <p class="muted">{t("limits.none")}</p>;
  return (
    <div class="table-wrap">
      <table class="data" data-testid="effective-limits">
        <thead>
          <tr>
            <th scope="col">{t("models.model")}</th>
            <th scope="col" class="num">RPM</th>
            <th scope="col" class="num">TPM</th>
            <th scope="col" class="num">RPD</th>
            <th scope="col" class="num">{t("dash.multiplier")}</th>
            <th scope="col" class="num">{t("limits.usableKeys")}</th>
          </tr>
        </thead>
        <tbody>
          {props.limits.map((l) => (
            <tr key={l.model} data-model={l.model}>
              <td class="cell-main mono">{l.model}</td>
              <td data-label="RPM" class="num">{n(l.pool.rpm)}</td>
              <td data-label="TPM" class="num">{n(l.pool.tpm)}</td>
              <td data-label="RPD" class="num">{n(l.pool.rpd)}</td>
              <td data-label={t("dash.multiplier")} class="num">×{l.multiplier}</td>
              <td data-label={t("limits.usableKeys")} class="num">{l.usable_keys}</td>
            </tr>
          ))}
        </tbody>
      </table>
    </div>
  );
}
