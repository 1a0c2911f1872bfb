package sim

func boundedPolicies(c float64) []Policy   { return nil }

func FactorOf(p Policy) float64 { return 0 }
func BinsPolicies() []Policy { return []Policy{Uniform} }
