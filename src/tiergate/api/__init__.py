"""HTTP edge: one router per API surface; routers translate HTTP to a typed call and back."""
