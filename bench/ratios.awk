# ratios of each Serve benchmark to bare and bare-bp of the same run (same workload, same serial/parallel)
/^BenchmarkServe\// {
  split($1, p, "/"); w = p[2]; px = p[3]; m = p[4]; sub(/-[0-9]+$/, "", m)
  k = w SUBSEP px SUBSEP m; occ[k]++; r = occ[k]
  ns[k, r] = $3; for (i = 4; i <= NF; i++) { if ($(i+1) == "cpu-ns/op") cpu[k, r] = $i; if ($(i+1) == "allocs/op") al[k, r] = $i }
  if (!(k in seen)) { seen[k] = 1; order[++n] = k } if (r > R) R = r
}
function med(a, m,   i, j, v) { for (i = 2; i <= m; i++) { v = a[i]; j = i - 1; while (j >= 1 && a[j] > v) { a[j+1] = a[j]; j-- } a[j+1] = v }
  return (m % 2) ? a[(m+1)/2] : (a[m/2] + a[m/2+1]) / 2 }
function fmt(a, m,   lo, hi, md) { md = med(a, m); return sprintf("%.2f [%.2f–%.2f]", md, a[1], a[m]) }
END {
  print "| workload | proxy | mode | ns/op | cpu-ns/op | allocs/op | ns/op ÷ bare-bp | cpu-ns/op ÷ bare-bp | ns/op ÷ bare |"
  print "|---|---|---|---|---|---|---|---|---|"
  for (o = 1; o <= n; o++) { k = order[o]; split(k, K, SUBSEP)
    bb = K[1] SUBSEP "bare-bp" SUBSEP K[3]; b0 = K[1] SUBSEP "bare" SUBSEP K[3]
    delete x; delete y; delete z; delete u; delete v
    for (r = 1; r <= R; r++) { x[r] = ns[k, r] / ns[bb, r]; y[r] = cpu[k, r] / cpu[bb, r]; z[r] = ns[k, r] / ns[b0, r]; u[r] = ns[k, r]; v[r] = cpu[k, r] }
    printf "| %s | %s | %s | %.0f | %.0f | %d | %s | %s | %s |\n", K[1], K[2], K[3], med(u, R), med(v, R), al[k, 1], fmt(x, R), fmt(y, R), fmt(z, R) }
}
