library(testthat)
library(terrarium)

test_check("terrarium")
