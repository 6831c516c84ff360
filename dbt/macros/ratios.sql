{#- The project's two formulas for ratios; every rate, share and growth in the marts goes through them. -#}

{#- numerator / denominator as a fraction; NULL when the denominator is NULL or 0 (we do not invent a number). -#}
{% macro safe_divide(numerator, denominator) -%}
    case when {{ denominator }} is null or {{ denominator }} = 0 then null
         else cast({{ numerator }} as {{ type_double() }}) / {{ denominator }} end
{%- endmacro %}

{#- (current - previous) / previous; NULL when the previous value is missing or 0. -#}
{% macro growth(current, previous) -%}
    {{ safe_divide('(' ~ current ~ ') - (' ~ previous ~ ')', previous) }}
{%- endmacro %}

{#- The mean of a column, ignoring NULLs. Summed as DECIMAL: an exact sum does not depend on the
    order a parallel engine adds the rows in, so the same inbox always gives bit-identical marts. -#}
{% macro mean(expression) -%}
    cast(avg(cast({{ expression }} as decimal(38, 18))) as {{ type_double() }})
{%- endmacro %}
