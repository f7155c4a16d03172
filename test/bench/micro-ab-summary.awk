# micro-ab-summary.awk — medians and ranges of micro-ab.sh output, per
# benchmark and side, for one metric (-v metric=cpu-ns/span by default),
# and the ratio B/A of the medians.
BEGIN { if (metric == "") metric = "cpu-ns/span" }
/^round/ {
	side = $3; name = $5
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
	printf "| benchmark | A median (range) | B median (range) | B/A |\n| --- | --: | --: | --: |\n"
	for (name in names) {
		ma = median(name, "A"); mb = median(name, "B")
		printf "| %s | %.0f (%.0f–%.0f) | %.0f (%.0f–%.0f) | %.2f |\n", name, ma, lo[name, "A"], hi[name, "A"], mb, lo[name, "B"], hi[name, "B"], mb / ma
	}
}
