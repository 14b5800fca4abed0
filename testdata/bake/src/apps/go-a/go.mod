module example.com/go-a

go 1.22
