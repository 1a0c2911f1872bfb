package sim


func BinsPolicies() []Policy { return []Policy{Uniform} }
