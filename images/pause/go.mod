module labstack.invalid/pause

go 1.24
