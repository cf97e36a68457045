/**
 * A key's status as a coloured badge with its reason and end time underneath.
 */
import { formatDateTime } from "../../lib/ui/format.ts";
import { useT } from "../../lib/ui/i18n.ts";

/** Props of `StatusBadge`. */
export interface StatusBadgeProps {
  status: string;
  /** Why a key rests: rate_limit, daily_quota, no_quota, errors. */
  cause?: string | null;
  enabled?: boolean;
  reason?: string | null;
  until?: string | null;
}

/** Shows a key status, its reason and until when it lasts. */
export function StatusBadge(props: StatusBadgeProps) {
  const t = useT();
  const shown = props.enabled === false && props.status === "active" ? "disabled" : props.status;
  const label = t.maybe(`keys.status.${shown}`) ?? shown;
  return (
    <span>
      <span class={`badge badge-${shown}`} data-status={shown}>{label}</span>
      {shown === "cooldown" && props.cause && t.maybe(`keys.cause.${props.cause}`)
        ? <span class="cell-sub">{t.maybe(`keys.cause.${props.cause}`)}</span>
        : null}
      {props.reason
        ? <span class="cell-sub clamp-2" title={props.reason}>{props.reason}</span>
        : null}
      {props.until
        ? (
          <span class="cell-sub">
            {t("common.until", { time: formatDateTime(props.until, t.lang) })}
          </span>
        )
        : null}
    </span>
  );
}
