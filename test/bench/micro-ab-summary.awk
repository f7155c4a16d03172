# micro-ab-summary.awk — medians and ranges of micro-ab.sh output, per
# benchmark and side (A, B, ...), for one metric (-v metric=cpu-ns/span by
# default), and each side's median over A's.
BEGIN { if (metric == "") metric = "cpu-ns/span" }
/^round/ {
	side = $3; name = $5; sides[side] = 1
	for (i = 6; i < NF; i++) if ($(i + 1) == metric) { v[name, side, ++n[name, side]] = $i; names[name] = 1 }
}
function median(name, side,    k, a, i, j, t) {
	k = n[name, side]
	for (i = 1; i <= k; i++) a[i] = v[name, side, i]
	for (i = 1; i <= k; i++) for (j = i + 1; j <= k; j++) if (a[j] < a[i]) { t = a[i]; a[i] = a[j]; a[j] = t }
	lo[name, side] = a[1]; hi[name, side] = a[k]
	return k % 2 ? a[(k + 1) / 2] : (a[k / 2] + a[k / 2 + 1]) / 2
}
END {
	ns = 0
	for (c = 65; c < 91; c++) { s = sprintf("%c", c); if (s in sides) order[++ns] = s }
	printf "| benchmark (%s) |", metric
	for (i = 1; i <= ns; i++) printf " %s median (range) |", order[i]
	for (i = 2; i <= ns; i++) printf " %s/A |", order[i]
	printf "\n| --- |"
	for (i = 1; i < 2 * ns; i++) printf " --: |"
	printf "\n"
	for (name in names) {
		printf "| %s |", name
		for (i = 1; i <= ns; i++) { m[i] = median(name, order[i]); printf " %.0f (%.0f–%.0f) |", m[i], lo[name, order[i]], hi[name, order[i]] }
		for (i = 2; i <= ns; i++) printf " %.2f |", m[i] / m[1]
		printf "\n"
	}
}
