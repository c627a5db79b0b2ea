# escape=`
# Nothing here but comments.

#FROM python:3.11
